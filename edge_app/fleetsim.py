"""Simulated cameras for sizing a deployment: the edge's own windows and messages, without scoring.

Each simulated camera sends what an edge sends (`edge_app.stages`): one metrics window every
`window` seconds, closed by the edge's `MetricsWindow`, and its uncertain images, built by the
edge's `UncertainFilter` from real PNG frames of the bundled digits (prepared by the edge's own
preparation), spread over the window. Scoring is drawn, not computed: each image is right with
the camera's accuracy and uncertain with its uncertain share, so one process can stand in for
thousands of cameras. A share of the cameras drifts: their frames are rotated, their uncertain
share rises and their accuracy falls as the run goes on.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge_app.stages import FrameBatch, MetricsWindow, Scored, UncertainFilter
from edgemnist.data import load_frames
from edgemnist.distort import distorted_frames
from edgemnist.prep import prepare_batch
from edgemnist.uncertainty import CONFIDENCE
from edgemnist.wire.messages import (
    LABEL_SLOTS,
    CameraCounts,
    EdgeConfig,
    MetricsMessage,
    OutboxStats,
    utc_timestamp,
)

__all__ = ["FleetPlan", "Outgoing", "SimulatedFleet", "camera_names"]

POOL = 256  # distinct frames per look (plain, drifted) the cameras draw from
MODEL = "sim-1"


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """What to simulate: how many cameras, how often they report, what they send home."""

    cameras: int = 10_000
    window: float = 10.0  # seconds per metrics window
    fps: float = 30.0  # images scored per second per camera
    uncertain_share: float = 0.015
    drift_share: float = 0.05  # share of cameras that drift
    accuracy: float = 0.97  # live accuracy of a healthy camera
    prefix: str = "sim"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low, high in (("cameras", 1, 10**6), ("window", 0.1, 3600), ("fps", 0.01, 10_000),
                                ("uncertain_share", 0, 1), ("drift_share", 0, 1), ("accuracy", 0, 1)):  # fmt: skip
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"--{name.replace('_', '-')} {value}: must be between {low} and {high}")

    @property
    def images_per_window(self) -> int:
        return max(1, round(self.fps * self.window))

    def offered_per_second(self) -> tuple[float, float]:
        """(metrics windows, uncertain images) per second the whole fleet sends, on average."""
        drifting = self.cameras * self.drift_share
        share = (self.cameras - drifting) * self.uncertain_share + drifting * min(
            1.0, 3 * self.uncertain_share
        )
        return self.cameras / self.window, share * self.fps


def camera_names(plan: FleetPlan) -> list[str]:
    """`<prefix>-00000`, ...: names sort in camera order."""
    width = max(5, len(str(plan.cameras - 1)))
    return [f"{plan.prefix}-{k:0{width}d}" for k in range(plan.cameras)]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: the camera (the Kafka key), its JSON, and its kind."""

    camera: str
    value: bytes
    is_metrics: bool


class _Look:
    """Frames of one look (plain or drifted): labels, and one uncertain-image message per frame.

    The messages are built once by the edge's `UncertainFilter` from the frame and its prepared
    image; each one sent is that message with its camera, count, time and scores replaced.
    """

    def __init__(self, frames: tuple[bytes, ...], labels: np.ndarray) -> None:
        self.frames, self.labels = frames, labels
        prepared = prepare_batch(frames)
        n = len(frames)
        probs = np.full((n, 10), 0.4 / 9)
        probs[np.arange(n), labels] = 0.6
        scored = Scored(np.arange(n), prepared, probs, 0.0004, 0.0002, model_version=MODEL)
        batch = FrameBatch(frames, labels, np.zeros(n), 0, "template", "template")
        self.messages = UncertainFilter(CONFIDENCE)(batch, scored)
        if len(self.messages) != n:
            raise AssertionError("every template frame must be uncertain")


def _template_window(plan: FleetPlan) -> MetricsMessage:
    """A metrics message closed by the edge's own `MetricsWindow` over one window of drawn images."""
    n = plan.images_per_window
    window = MetricsWindow(plan.window, EdgeConfig(metrics_duration=int(max(1, round(plan.window)))))
    probs = np.full((n, 10), 0.01 / 9)
    probs[:, 0] = 0.99
    window.add(Scored(np.arange(n), _blank(n), probs, 0.0004, 0.0002, model_version=MODEL), np.zeros(n, int))
    msg = window.close(time.time(), "template", "template", OutboxStats(0, 0), MODEL, held_back=0)
    assert msg is not None
    return msg


class _Camera:
    def __init__(self, name: str, drifts: bool, phase: float) -> None:
        self.name, self.drifts, self.phase = name, drifts, phase
        self.run_id = uuid.uuid4().hex[:12]
        self.seq = 0  # windows sent
        self.count = 0  # images scored
        self.opened = 0.0
        self.counts: tuple[tuple[int, ...], tuple[int, ...], int, int] = ((), (), 0, 0)


class SimulatedFleet:
    """The cameras `index % workers == worker` of a plan; `due(now)` yields what they send by `now`.

    Windows are staggered over the window length, so the fleet sends at a steady rate; a
    camera's first window is shorter (it opens at `start`). A window's images are drawn when it
    opens; its uncertain images go out at their times within it, and its metrics message (which
    counts them) when it closes.
    """

    def __init__(self, plan: FleetPlan, worker: int = 0, workers: int = 1) -> None:
        self.plan = plan
        self._rng = np.random.default_rng(plan.seed * 1000 + worker)
        pick = random.Random(plan.seed)
        names = camera_names(plan)
        drifting = set(pick.sample(range(plan.cameras), round(plan.cameras * plan.drift_share)))
        self._cams = [
            _Camera(names[k], k in drifting, plan.window * (k + 1) / plan.cameras)
            for k in range(worker, plan.cameras, workers)
        ]
        self._start = 0.0
        self._next: list[float] = []  # when each camera's open window closes
        # a heap of (due, tiebreak, camera, frame, count, result, top) of the uncertain images to send
        self._pending: list[tuple[float, int, int, int, int, int, float]] = []
        self._tiebreak = itertools.count()
        self._cursor = 0
        self._plain: _Look | None = None
        self._drifted: _Look | None = None
        self._window: MetricsMessage | None = None

    def __enter__(self) -> SimulatedFleet:
        bundled = load_frames("bundled")
        keep = np.arange(min(POOL, len(bundled.frames)))
        labels = bundled.labels if bundled.labels is not None else np.zeros(len(bundled.frames), int)
        self._plain = _Look(tuple(bundled.frames[i] for i in keep), labels[keep])
        turned = distorted_frames("bundled", "rotate:35")
        self._drifted = _Look(tuple(turned.frames[i] for i in keep), labels[keep])
        self._window = _template_window(self.plan)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def begin(self, start: float) -> None:
        """Open every camera's first window at `start` (it closes at `start` + the camera's phase)."""
        self._start = start
        self._next = [start + c.phase for c in self._cams]
        for k in range(len(self._cams)):
            self._open(k, start, self._next[k] - start)

    @property
    def cameras(self) -> int:
        return len(self._cams)

    def _figures(self, cam: _Camera, now: float) -> tuple[float, float]:
        """(accuracy, uncertain share) of a camera at `now`: a drifting one worsens over 5 minutes."""
        plan = self.plan
        if not cam.drifts:
            return plan.accuracy, plan.uncertain_share
        worse = min(1.0, max(0.0, now - self._start) / 300)
        return plan.accuracy - 0.25 * worse, min(1.0, plan.uncertain_share * (2 + 2 * worse))

    def _open(self, k: int, opened: float, seconds: float) -> None:
        """Draw the images of camera k's window, open from `opened` for `seconds`."""
        cam, rng = self._cams[k], self._rng
        n = max(1, round(self.plan.fps * seconds))
        look = self._look(cam)
        accuracy, share = self._figures(cam, opened)
        frames = rng.integers(0, len(look.frames), n)
        truth = look.labels[frames]
        right = rng.random(n) < accuracy
        result = np.where(right, truth, (truth + rng.integers(1, 10, n)) % 10)
        unsure = rng.random(n) < share
        certain = np.bincount(result[~unsure], minlength=LABEL_SLOTS)
        uncertain = np.bincount(result[unsure], minlength=LABEL_SLOTS)
        cam.counts = (tuple(certain.tolist()), tuple(uncertain.tolist()), n, int(right.sum()))
        cam.opened = opened
        picked = np.flatnonzero(unsure)
        times = opened + rng.uniform(0, seconds, len(picked))
        tops = rng.uniform(0.5, CONFIDENCE, len(picked))
        for t, j, top in zip(times.tolist(), picked.tolist(), tops.tolist(), strict=True):
            item = (t, next(self._tiebreak), k, int(frames[j]), cam.count + j, int(result[j]), top)
            heapq.heappush(self._pending, item)
        cam.count += n

    def _look(self, cam: _Camera) -> _Look:
        look = self._drifted if cam.drifts else self._plain
        if look is None:
            raise RuntimeError("SimulatedFleet used outside its `with` block")
        return look

    def due(self, now: float) -> Iterator[Outgoing]:
        """Every message due by `now`: uncertain images first, then the windows that closed."""
        while self._pending and self._pending[0][0] <= now:
            when, _, k, frame, count, result, top = heapq.heappop(self._pending)
            yield Outgoing(self._cams[k].name, self._image(k, frame, count, result, top, when), False)
        while self._cams:
            k = self._cursor
            closes = self._next[k]
            if closes > now:
                return
            yield Outgoing(self._cams[k].name, self._close(k, closes), True)
            self._next[k] = closes + self.plan.window
            self._open(k, closes, self.plan.window)
            self._cursor = (self._cursor + 1) % len(self._cams)

    def _close(self, k: int, closes: float) -> bytes:
        """The window's metrics message: the edge's own message, with this camera's counts."""
        cam, template = self._cams[k], self._window
        assert template is not None
        certain, uncertain, n, right = cam.counts
        cam.seq += 1
        msg = dataclasses.replace(
            template,
            camera_metrics={cam.name: CameraCounts(certain, uncertain)},
            timestamp=utc_timestamp(closes),
            id=f"{cam.name}/{cam.run_id}/m{cam.seq}",
            window_start=utc_timestamp(cam.opened),
            window_end=utc_timestamp(closes),
            images=n,
            labelled=n,
            correct=right,
        )
        return msg.to_json()

    def _image(self, k: int, frame: int, count: int, result: int, top: float, when: float) -> bytes:
        cam = self._cams[k]
        template = self._look(cam).messages[frame]
        scores = [(1.0 - top) / 9] * 10
        scores[result] = top
        msg = dataclasses.replace(
            template,
            count=count,
            camera=cam.name,
            timestamp=utc_timestamp(when),
            predictions=tuple(scores),
            result_class=result,
            result_probability=top,
            id=f"{cam.name}/{cam.run_id}/{count}",
        )
        return msg.to_json()


def _blank(n: int) -> np.ndarray:
    """Prepared images a metrics window never reads: one shared zero image, viewed n times."""
    return np.broadcast_to(np.zeros((1, 28, 28), np.uint8), (n, 28, 28))
