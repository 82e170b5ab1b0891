"""The canary rule: a model on a few cameras is judged against the same cameras just before it.

Per canary camera, the windows scored by the new model are pooled (sums of
images, uncertain images, labelled and correct images) and compared with the
camera's own windows before the rollout, pooled the same way:

- a model a canary camera refused (hash, allow-list, probe) fails at once;
- live accuracy (where the source knows labels) may drop at most
  ``max_accuracy_drop`` points, the uncertain share may rise at most
  ``max_uncertain_rise`` points; a broken bound rolls back, but only once the
  pooled windows hold ``min_images`` images (labelled images, for accuracy) or
  the camera has sent its ``windows`` windows, so one tiny window cannot decide;
- when every canary camera has sent ``windows`` windows within bounds, the
  model is promoted; when the time runs out first, it is rolled back.

Pure functions over parsed metrics messages, so every transition tests without
a store or a broker.

>>> base = Figures(windows=5, images=1000, uncertain=30, labelled=1000, correct=970)
>>> bad = Figures(windows=1, images=250, uncertain=240, labelled=250, correct=25)
>>> p = Policy(windows=3, max_accuracy_drop=5, max_uncertain_rise=10)
>>> judge({"A": base}, {"A": bad}, [], p, elapsed=1.0).action
'rollback'
>>> judge({"A": base}, {"A": Figures(3, 750, 24, 750, 726)}, [], p, elapsed=3.0).action
'promote'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgemnist.cliargs import check_fields
from edgemnist.wire.envelope import targets_match

__all__ = ["Policy", "Figures", "Verdict", "figures", "matches", "judge"]


@dataclass(frozen=True, slots=True)
class Policy:
    """How long a canary runs and how much worse it may be; points are percentage points."""

    windows: int = 5
    max_accuracy_drop: float = 5.0
    max_uncertain_rise: float = 10.0
    timeout: float = 600.0
    min_images: int = 50
    shadow: bool = True  # start with a shadow stage (`metro_app.rollout.paired`); False: canary at once
    shadow_labels: int = 20
    shadow_alpha: float = 0.05

    def __post_init__(self) -> None:
        checks = [
            ("windows", 1 <= self.windows <= 10_000, "must be 1 to 10000"),
            ("max_accuracy_drop", 0.0 <= self.max_accuracy_drop <= 100.0, "must be 0 to 100 points"),
            ("max_uncertain_rise", 0.0 <= self.max_uncertain_rise <= 100.0, "must be 0 to 100 points"),
            ("timeout", self.timeout > 0, "must be more than 0 seconds"),
            ("min_images", self.min_images >= 0, "must be 0 or more"),
            ("shadow_labels", 1 <= self.shadow_labels <= 100_000, "must be 1 to 100000"),
            ("shadow_alpha", 0.0 < self.shadow_alpha < 1.0, "must be between 0 and 1"),
        ]
        check_fields(self, checks, prefix="rollout ")

    def shadow_rule(self) -> dict[str, Any] | None:
        """What the store keeps of the shadow stage's rule; None without a shadow stage."""
        return {"labels": self.shadow_labels, "alpha": self.shadow_alpha} if self.shadow else None


@dataclass(frozen=True, slots=True)
class Figures:
    """Pooled counts of some windows of one camera."""

    windows: int = 0
    images: int = 0
    uncertain: int = 0
    labelled: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def uncertain_share(self) -> float | None:
        return self.uncertain / self.images if self.images else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": self.accuracy, "uncertain_share": self.uncertain_share}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Figures:
        return cls(*(int(d.get(k) or 0) for k in ("windows", "images", "uncertain", "labelled", "correct")))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do now: "wait", "promote" or "rollback", and why (with the figures)."""

    action: str
    reason: str


def matches(camera: str, targets: Iterable[str]) -> bool:
    """Whether `camera` (``<camera>-<hostname>``) is one of `targets` (full names or camera parameters).

    The edges' rule (`edgemnist.wire.envelope.ModelEnvelope.applies_to`), so the watcher judges exactly
    the cameras the canary model went to.
    """
    return targets_match(camera, targets)


def figures(windows: Iterable[Mapping[str, Any]], camera: str) -> Figures:
    """Pool one camera's metrics messages (as stored: the wire JSON)."""
    n = images = uncertain = labelled = correct = 0
    for w in windows:
        counts = (w.get("camera_metrics") or {}).get(camera)
        if counts is None:
            continue
        n += 1
        unc = sum(counts.get("uncertain") or ())
        images += sum(counts.get("certain") or ()) + unc
        uncertain += unc
        if len(w["camera_metrics"]) == 1 and w.get("labelled"):  # labels are counted per message
            labelled += int(w["labelled"])
            correct += int(w.get("correct") or 0)
    return Figures(n, images, uncertain, labelled, correct)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _broken(camera: str, before: Figures, now: Figures, policy: Policy) -> str | None:
    decided = now.windows >= policy.windows
    if before.accuracy is not None and now.accuracy is not None:
        if now.labelled >= policy.min_images or decided:
            drop = 100.0 * (before.accuracy - now.accuracy)
            if drop > policy.max_accuracy_drop + 1e-9:
                return (
                    f"{camera}: live accuracy {_pct(before.accuracy)} -> {_pct(now.accuracy)} "
                    f"({-drop:+.1f} points, at most -{policy.max_accuracy_drop:g} allowed; "
                    f"{now.labelled} labelled images in {now.windows} windows)"
                )
    if before.uncertain_share is not None and now.uncertain_share is not None:
        if now.images >= policy.min_images or decided:
            rise = 100.0 * (now.uncertain_share - before.uncertain_share)
            if rise > policy.max_uncertain_rise + 1e-9:
                return (
                    f"{camera}: uncertain share {_pct(before.uncertain_share)} -> {_pct(now.uncertain_share)} "
                    f"({rise:+.1f} points, at most +{policy.max_uncertain_rise:g} allowed; "
                    f"{now.images} images in {now.windows} windows)"
                )
    return None


def _summary(camera: str, before: Figures, now: Figures) -> str:
    return (
        f"{camera}: accuracy {_pct(before.accuracy)} -> {_pct(now.accuracy)}, "
        f"uncertain {_pct(before.uncertain_share)} -> {_pct(now.uncertain_share)} over {now.windows} windows"
    )


def judge(
    baseline: Mapping[str, Figures],
    canary: Mapping[str, Figures],
    refusals: Sequence[str],
    policy: Policy,
    elapsed: float,
) -> Verdict:
    """The verdict on a canary so far.

    Args:
        baseline: per canary camera, its pooled windows before the rollout.
        canary: per canary camera, its pooled windows scored by the new model.
        refusals: "<camera>: <reason>" for each refusal of the new model by a canary camera.
        elapsed: seconds since the canary was published.
    """
    if refusals:
        return Verdict("rollback", "refused by a canary camera: " + "; ".join(refusals))
    for camera, before in baseline.items():
        why = _broken(camera, before, canary.get(camera, Figures()), policy)
        if why is not None:
            return Verdict("rollback", f"bound broken: {why}")
    summaries = "; ".join(_summary(c, b, canary.get(c, Figures())) for c, b in baseline.items())
    if all(canary.get(c, Figures()).windows >= policy.windows for c in baseline):
        return Verdict("promote", f"{policy.windows} windows within bounds: {summaries}")
    if elapsed > policy.timeout:
        short = [f"{c} {canary.get(c, Figures()).windows}" for c in baseline]
        return Verdict(
            "rollback",
            f"timed out after {policy.timeout:g} s with too few windows scored by the canary "
            f"({', '.join(short)} of {policy.windows})",
        )
    return Verdict("wait", summaries)
