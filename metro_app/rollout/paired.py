"""The shadow rule: a candidate scoring beside the serving model is judged on the frames where they disagree.

On a frame where both models give the same class, neither can be the better one, so
only the *discordant pairs* decide: labelled disagreements where exactly one model is
right. ``candidate_right`` counts those won by the candidate, ``serving_right`` those
won by the serving model. If the two models were equally good, ``serving_right`` would
follow Binomial(n, 1/2) with ``n = candidate_right + serving_right``; McNemar's exact
test is the one-sided binomial test of that (`scipy.stats.binomtest`, ``alternative=
"greater"``), and its p-value is the one reported.

- **roll back** as soon as the serving model is right on significantly more
  (``p_value < alpha``); rolling back needs no minimum, it is the safe direction;
- **promote** once ``n >= labels`` and the candidate is not worse
  (``candidate_right >= serving_right``, so the test cannot be significant);
- **promote** as well when the models agreed on every frame of every canary camera for
  ``windows`` windows or more: they are then identical in effect;
- on cameras whose source knows the labels, the windows' right answers decide as well,
  frame for frame on the same images: once ``min_images`` labelled frames were scored by
  both, a candidate more than ``max_accuracy_drop`` points below the serving model is
  rolled back, and one within that bound is promoted after ``windows`` windows;
- **time out** after ``timeout`` seconds with too few labels: the candidate is
  refused ("needs 7 more labelled disagreements"); the rule never promotes blind;
- otherwise **wait** (for labels, or for a lead to turn significant).

Pure functions over counts, so each decision tests without a store or a broker.

>>> p = PairedPolicy(labels=20, alpha=0.05, windows=5, timeout=600)
>>> decide(Pairs(candidate_right=1, serving_right=12), Agreement(), p, elapsed=30).action
'rollback'
>>> decide(Pairs(candidate_right=12, serving_right=8), Agreement(), p, elapsed=30).action
'promote'
>>> decide(Pairs(3, 2), Agreement(windows=5, images=1250, agree=1250), p, elapsed=30).action
'promote'
>>> decide(Pairs(3, 2), Agreement(windows=2, images=500, agree=480), p, elapsed=601).reason
'timed out after 600 s: needs 15 more labelled disagreements (5 of 20; candidate right 3, serving right 2)'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgemnist.cliargs import check_fields

__all__ = [
    "PairedPolicy",
    "Pairs",
    "Agreement",
    "Decision",
    "p_serving_better",
    "decide",
    "agreement",
    "ACTIONS",
]

ACTIONS = ("promote", "rollback", "wait", "timeout")


@dataclass(frozen=True, slots=True)
class PairedPolicy:
    """How many labelled disagreements decide, how sure a rollback must be, how long to wait."""

    labels: int = 20
    alpha: float = 0.05
    windows: int = 5
    timeout: float = 600.0
    max_accuracy_drop: float = 5.0  # on cameras that know labels
    min_images: int = 50

    def __post_init__(self) -> None:
        checks = [
            ("labels", 1 <= self.labels <= 100_000, "must be 1 to 100000"),
            ("alpha", 0.0 < self.alpha < 1.0, "must be between 0 and 1"),
            ("windows", 1 <= self.windows <= 10_000, "must be 1 to 10000"),
            ("timeout", self.timeout > 0, "must be more than 0 seconds"),
            ("max_accuracy_drop", 0.0 <= self.max_accuracy_drop <= 100.0, "must be 0 to 100 points"),
            ("min_images", self.min_images >= 0, "must be 0 or more"),
        ]
        check_fields(self, checks, prefix="shadow ")


@dataclass(frozen=True, slots=True)
class Pairs:
    """Labelled disagreements where exactly one model is right (McNemar's discordant pairs)."""

    candidate_right: int = 0
    serving_right: int = 0

    @property
    def n(self) -> int:
        return self.candidate_right + self.serving_right


@dataclass(frozen=True, slots=True)
class Agreement:
    """Shadow windows pooled over the canary cameras: frames both models scored, frames they agreed on.

    ``windows`` counts the windows of the camera that sent fewest, so "every camera sent N".
    """

    windows: int = 0
    images: int = 0
    agree: int = 0
    labelled_frames: int = 0  # frames of fully shadowed windows whose source knew the label
    serving_correct: int = 0  # of those, right by the serving model
    candidate_correct: int = 0  # and by the candidate
    held_back: int = 0  # disagreements the edges' per-window cap kept at the edge

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


@dataclass(frozen=True, slots=True)
class Decision:
    """One of `ACTIONS`, why, and the test's p-value (None while no pair is labelled)."""

    action: str
    reason: str
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "p_value": self.p_value}


def p_serving_better(pairs: Pairs) -> float | None:
    """Exact one-sided McNemar p-value that the serving model is the better one; None with no pairs.

    >>> round(p_serving_better(Pairs(candidate_right=0, serving_right=5)), 5)
    0.03125
    """
    if pairs.n == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(pairs.serving_right, pairs.n, 0.5, alternative="greater").pvalue)


def _counts(pairs: Pairs, policy: PairedPolicy) -> str:
    return (
        f"{pairs.n} of {policy.labels}; candidate right {pairs.candidate_right}, "
        f"serving right {pairs.serving_right}"
    )


def decide(pairs: Pairs, agreement: Agreement, policy: PairedPolicy, elapsed: float) -> Decision:
    """The verdict on a shadow stage so far.

    Args:
        pairs: the labelled disagreements of the canary cameras, by which model was right.
        agreement: the canary cameras' shadow windows since the stage began.
        elapsed: seconds since the candidate was published in the shadow role.
    """
    p = p_serving_better(pairs)
    if p is not None and p < policy.alpha:
        return Decision(
            "rollback",
            f"serving model right on significantly more labelled disagreements: serving right "
            f"{pairs.serving_right}, candidate right {pairs.candidate_right} (McNemar p={p:.4g} < {policy.alpha:g})",
            p,
        )
    if agreement.labelled_frames and agreement.labelled_frames >= policy.min_images:
        serving, candidate = (
            agreement.serving_correct / agreement.labelled_frames,
            agreement.candidate_correct / agreement.labelled_frames,
        )
        drop = 100.0 * (serving - candidate)
        same = (
            f"on the same {agreement.labelled_frames} labelled frames: candidate {candidate:.3f}, "
            f"serving {serving:.3f} ({-drop:+.1f} points, at most -{policy.max_accuracy_drop:g} allowed)"
        )
        if drop > policy.max_accuracy_drop + 1e-9:
            return Decision("rollback", f"live accuracy {same}", p)
        if agreement.windows >= policy.windows:
            return Decision("promote", f"live accuracy within bounds {same}", p)
    if pairs.n >= policy.labels and pairs.candidate_right >= pairs.serving_right:
        shown = "n/a" if p is None else f"{p:.4g}"
        return Decision(
            "promote",
            f"candidate not worse on {pairs.n} labelled disagreements: candidate right "
            f"{pairs.candidate_right}, serving right {pairs.serving_right} (McNemar p={shown})",
            p,
        )
    if agreement.windows >= policy.windows and agreement.images > 0 and agreement.agree == agreement.images:
        return Decision(
            "promote",
            f"identical in effect: the models agreed on all {agreement.images} images "
            f"of {agreement.windows} windows",
            p,
        )
    needed = max(policy.labels - pairs.n, 0)
    if needed:
        why = f"needs {needed} more labelled disagreements ({_counts(pairs, policy)})"
    else:
        why = f"serving model ahead, not significantly ({_counts(pairs, policy)})"
    if elapsed > policy.timeout:
        return Decision("timeout", f"timed out after {policy.timeout:g} s: {why}", p)
    return Decision("wait", why, p)


def agreement(by_camera: Mapping[str, Iterable[Mapping[str, Any]]], version: str) -> Agreement:
    """Pool the canary cameras' metrics windows (the wire JSON) in which `version` scored in shadow.

    Right answers are compared only over windows the shadow model scored whole (its ``images``
    equal the window's), so both counts are over the same frames.

    >>> w = {"camera_metrics": {"A": {"certain": [9, 0], "uncertain": [1, 0]}}, "labelled": 10, "correct": 9,
    ...      "shadow": {"version": "m-2", "images": 10, "agree": 8, "correct": 7, "held_back": 0}}
    >>> agreement({"A": [w, w]}, "m-2")
    Agreement(windows=2, images=20, agree=16, labelled_frames=20, serving_correct=18, candidate_correct=14, held_back=0)
    """
    fewest: int | None = None
    images = agree = labelled = serving = candidate = held = 0
    for camera, windows in by_camera.items():
        n = 0
        for w in windows:
            sh = w.get("shadow") or {}
            if sh.get("version") != version:
                continue
            n += 1
            images += int(sh.get("images") or 0)
            agree += int(sh.get("agree") or 0)
            held += int(sh.get("held_back") or 0)
            counts = (w.get("camera_metrics") or {}).get(camera) or {}
            scored = sum(counts.get("certain") or ()) + sum(counts.get("uncertain") or ())
            if sh.get("correct") is not None and w.get("labelled") and scored == sh.get("images"):
                labelled += int(w["labelled"])
                serving += int(w.get("correct") or 0)
                candidate += int(sh["correct"])
        fewest = n if fewest is None else min(fewest, n)
    return Agreement(fewest or 0, images, agree, labelled, serving, candidate, held)
