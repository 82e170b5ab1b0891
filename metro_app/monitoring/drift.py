"""Drift detection per camera: a published change detector on each camera's window signals.

Each camera's metrics windows are pooled into observations of at least
`min_images` images (a slow camera's tiny windows are too noisy alone), and
each observation feeds one detector per signal: the **uncertain share**
(always) and the **live accuracy** (correct / labelled, when the source knows
its labels). The detector is river's ADWIN (Bifet & Gavalda, "Learning from
time-changing data with adaptive windowing", SDM 2007), or Page-Hinkley
(Page, "Continuous inspection schemes", Biometrika 1954) when configured.

When a detector fires, the change point is estimated on the observations
since the signal's last reset (the split that maximises the t-like statistic
|mean after - mean before| * sqrt(n1 n2 / n)), and the change becomes an
alert only when it goes the bad way (uncertain share up, accuracy down) by
at least `min_change`: a statistically real but harmless wobble raises
nothing. A change the good way closes the signal's open alert (recovery).
A model change resets the camera's detectors: a new model has a new
baseline, and judging it is the rollout's job, not drift's.

Everything here is pure and deterministic: the same windows in the same
order give the same alerts, so a restarted hub rebuilds every detector by
replaying the store, and alert keys (camera, signal, window that fired) make
the replay add nothing twice.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgemnist.cliargs import check_fields
from edgemnist.wire.messages import MetricsMessage

__all__ = [
    "DETECTORS",
    "SIGNALS",
    "DriftSettings",
    "Observation",
    "Change",
    "CameraDrift",
    "FleetDrift",
    "change_point",
    "window_observation",
]

DETECTORS = ("adwin", "page_hinkley")
SIGNALS = ("uncertain_share", "accuracy")
MAX_BITS_PER_WINDOW = 4096  # detector updates one (pooled) window may expand to
_WORSE = {"uncertain_share": +1, "accuracy": -1}  # the direction that is bad news
_HISTORY = 1000  # observations kept per signal for the change-point estimate and the evidence


@dataclass(frozen=True, slots=True)
class DriftSettings:
    """Thresholds of the drift alerts; defaults are documented in the README (Drift alerts).

    Attributes:
        detector: ``adwin`` (default) or ``page_hinkley``.
        delta: ADWIN's significance (false-positive bound per check); Page-Hinkley tolerates
            ``min_change / 2`` per observation instead.
        threshold: Page-Hinkley's alarm threshold (lambda, in units of the signal); unused by ADWIN.
        min_windows: observations a signal needs (after start or a reset) before it may fire.
        min_images: images pooled into one observation.
        min_change: the smallest change of the mean (absolute, share or accuracy) that alerts.
        fleet_windows: consecutive observations a camera must depart from the fleet before an alert.
        camera_error_share: share of a camera's settled labels that are ``Camera Error`` that alerts..
        camera_error_min_labels: .. once the camera has at least this many settled labels.
    """

    detector: str = "adwin"
    delta: float = 0.002
    threshold: float = 0.5
    min_windows: int = 8
    min_images: int = 50
    min_change: float = 0.05
    fleet_windows: int = 3
    camera_error_share: float = 0.2
    camera_error_min_labels: int = 10

    def __post_init__(self) -> None:
        checks = [
            ("drift_detector", self.detector in DETECTORS, f"must be one of {', '.join(DETECTORS)}"),
            ("drift_delta", 0 < self.delta < 1, "must be between 0 and 1"),
            ("drift_threshold", self.threshold > 0, "must be positive"),
            ("drift_min_windows", 2 <= self.min_windows <= 10_000, "must be between 2 and 10000"),
            ("drift_min_images", 1 <= self.min_images <= 10**7, "must be between 1 and 10000000"),
            ("drift_min_change", 0 <= self.min_change < 1, "must be in [0, 1)"),
            ("fleet_windows", self.fleet_windows >= 1, "must be at least 1"),
            ("camera_error_share", 0 < self.camera_error_share <= 1, "must be in (0, 1]"),
            ("camera_error_min_labels", self.camera_error_min_labels >= 1, "must be at least 1"),
        ]
        check_fields(self, checks, attr=lambda name: name.removeprefix("drift_"))

    def make_detector(self) -> Any:
        from river import drift  # the hub extra; the edge never imports this module

        if self.detector == "adwin":
            # fed one 0/1 value per image (uncertain, or correct): checks every 32 images
            return drift.ADWIN(delta=self.delta, clock=32)
        # tolerated drift = half the smallest change worth an alert, the classic Page-Hinkley choice
        return drift.PageHinkley(
            min_instances=self.min_windows, delta=self.min_change / 2, threshold=self.threshold, mode="both"
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """One or more consecutive windows of a camera, pooled until they hold `min_images` images."""

    uncertain: int
    images: int
    labelled: int
    correct: int
    timestamp: str  # of the last window pooled
    window: str  # id of the last window pooled
    first_timestamp: str  # of the first window pooled
    windows: int = 1

    def value(self, signal: str) -> float | None:
        if signal == "uncertain_share":
            return self.uncertain / self.images if self.images else None
        return self.correct / self.labelled if self.labelled else None


@dataclass(frozen=True, slots=True)
class Change:
    """A change a detector found on one signal of one camera, with its evidence.

    `worse` says whether it goes the bad way by at least `min_change`: only those alert.
    """

    camera: str
    signal: str
    detector: str
    started: str  # timestamp of the first window after the change point
    detected: str  # timestamp of the window whose observation fired
    window: str  # id of that window: with camera and signal, the alert's key
    before_mean: float
    after_mean: float
    before_windows: int
    after_windows: int
    worse: bool

    @property
    def key(self) -> str:
        return f"{self.camera}|{self.signal}|{self.window}"

    def evidence(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "before_mean": round(self.before_mean, 6),
            "after_mean": round(self.after_mean, 6),
            "change": round(self.after_mean - self.before_mean, 6),
            "before_windows": self.before_windows,
            "after_windows": self.after_windows,
            "detected_at": self.detected,
            "detected_window": self.window,
        }

    def message(self) -> str:
        what = "uncertain share" if self.signal == "uncertain_share" else "live accuracy"
        return (
            f"camera {self.camera}: {what} changed from {self.before_mean:.1%} to {self.after_mean:.1%} "
            f"from {self.started} ({self.detector}, {self.before_windows} windows before, "
            f"{self.after_windows} after)"
        )


def change_point(values: list[float]) -> int:
    """The index that best splits `values` into two parts of different means (1..len-1).

    The split maximises |mean(b) - mean(a)| * sqrt(na * nb / n), the two-sample statistic
    with a common variance; linear time with prefix sums.

    >>> change_point([0.1, 0.1, 0.1, 0.5, 0.5])
    3
    """
    n = len(values)
    if n < 2:
        return max(0, n - 1)
    total = sum(values)
    best, at, left = -1.0, 1, 0.0
    for k in range(1, n):
        left += values[k - 1]
        na, nb = k, n - k
        score = abs((total - left) / nb - left / na) * math.sqrt(na * nb / n)
        if score > best:
            best, at = score, k
    return at


@dataclass
class _Signal:
    name: str
    settings: DriftSettings
    detector: Any = None
    history: deque[tuple[float, Observation]] = field(default_factory=lambda: deque(maxlen=_HISTORY))

    def __post_init__(self) -> None:
        self.detector = self.settings.make_detector()

    def reset(self) -> None:
        self.detector = self.settings.make_detector()
        self.history.clear()

    def add(self, camera: str, obs: Observation) -> Change | None:
        value = obs.value(self.name)
        if value is None:
            return None
        fired = False
        self.history.append((value, obs))
        if self.settings.detector == "adwin":
            ones, n = _counts(self.name, obs)
            for bit in _spread(ones, n):  # the per-image 0/1 stream ADWIN was made for
                self.detector.update(bit)
                fired = fired or self.detector.drift_detected
        else:
            self.detector.update(value)
            fired = self.detector.drift_detected
        if not fired or len(self.history) < self.settings.min_windows:
            return None
        values = [v for v, _ in self.history]
        k = change_point(values)
        before, after = values[:k], values[k:]
        first_after = self.history[k][1]
        mean_a, mean_b = sum(after) / len(after), sum(before) / len(before)
        worse = _WORSE[self.name] * (mean_a - mean_b) >= self.settings.min_change
        change = Change(
            camera=camera,
            signal=self.name,
            detector=self.settings.detector,
            started=first_after.first_timestamp,
            detected=obs.timestamp,
            window=obs.window,
            before_mean=mean_b,
            after_mean=mean_a,
            before_windows=sum(o.windows for _, o in list(self.history)[:k]),
            after_windows=sum(o.windows for _, o in list(self.history)[k:]),
            worse=worse,
        )
        # the after-part is the new baseline (ADWIN has dropped the before-part itself; PH resets)
        for _ in range(k):
            self.history.popleft()
        return change


def _counts(signal: str, obs: Observation) -> tuple[int, int]:
    """(ones, images) of the signal's per-image bit: uncertain, or correct."""
    if signal == "uncertain_share":
        return obs.uncertain, obs.images
    return obs.correct, obs.labelled


def _spread(ones: int, n: int) -> list[int]:
    """n bits with `ones` ones spread evenly (the window's order is unknown; clumping would fake a change).

    A window of more than MAX_BITS_PER_WINDOW images is scaled down to that many bits, keeping its
    share, so one valid but huge window can neither freeze the loop nor grow its memory.

    >>> _spread(2, 5)
    [0, 0, 1, 0, 1]
    >>> len(_spread(10**8, 10**9)), sum(_spread(10**8, 10**9))
    (4096, 409)
    """
    if n > MAX_BITS_PER_WINDOW:
        ones, n = ones * MAX_BITS_PER_WINDOW // n, MAX_BITS_PER_WINDOW
    return [(i + 1) * ones // n - i * ones // n for i in range(n)]


def window_observation(body: MetricsMessage | Mapping[str, Any], camera: str) -> Observation | None:
    """One window of one camera as an observation; accuracy only from single-camera messages."""
    m = MetricsMessage.of(body)
    c = m.camera_metrics.get(camera)
    if c is None:
        return None
    single = m.single_camera == camera
    labelled = (m.labelled or 0) if single else 0
    correct = (m.correct or 0) if single else 0
    return Observation(c.n_uncertain, c.total, labelled, correct, m.timestamp, m.id or "", m.timestamp)


class CameraDrift:
    """One camera's detectors; feed its windows in store order with `add`."""

    def __init__(self, camera: str, settings: DriftSettings) -> None:
        self.camera = camera
        self.settings = settings
        self.signals = {name: _Signal(name, settings) for name in SIGNALS}
        self.model_version: str | None = None
        self._pool: Observation | None = None
        self.windows = 0

    def add(self, body: MetricsMessage | Mapping[str, Any]) -> list[Change]:
        """Count one metrics window of this camera; returns the changes it completes (usually none)."""
        m = MetricsMessage.of(body)
        obs = window_observation(m, self.camera)
        if obs is None:
            return []
        self.windows += 1
        version = m.model_version
        if version != self.model_version:
            if self.model_version is not None:
                for s in self.signals.values():
                    s.reset()
                self._pool = None
            self.model_version = version
        pool = obs if self._pool is None else _merge(self._pool, obs)
        if pool.images < self.settings.min_images:
            self._pool = pool
            return []
        self._pool = None
        return [c for s in self.signals.values() if (c := s.add(self.camera, pool)) is not None]


def _merge(a: Observation, b: Observation) -> Observation:
    return Observation(
        a.uncertain + b.uncertain,
        a.images + b.images,
        a.labelled + b.labelled,
        a.correct + b.correct,
        b.timestamp,
        b.window,
        a.first_timestamp,
        a.windows + b.windows,
    )


class FleetDrift:
    """The departs-from-fleet flag made an alert: raised after `fleet_windows` departed checks in a row."""

    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings
        self.streak: dict[str, int] = {}

    def update(self, flags: Mapping[str, bool]) -> tuple[list[str], list[str]]:
        """Given each camera's current flag, (cameras whose streak just reached the bound, cameras back)."""
        raised, back = [], []
        for cam, departs in flags.items():
            before = self.streak.get(cam, 0)
            now = before + 1 if departs else 0
            self.streak[cam] = now
            if now == self.settings.fleet_windows:
                raised.append(cam)
            elif now == 0 and before >= self.settings.fleet_windows:
                back.append(cam)
        return raised, back
