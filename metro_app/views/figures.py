"""Figures derived from metrics messages: per-camera counts, p99s, rates, live accuracy.

The hub's views and alerts and the dashboards compute them here, from typed messages, so a
change of the wire format breaks `edgemnist.wire.messages` loudly and nothing downstream silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgemnist.wire.messages import MetricsMessage

__all__ = [
    "DerivedRates",
    "derived_rates",
    "camera_counts",
    "camera_totals",
    "live_accuracy",
    "worst_p99",
    "typed_windows",
]


@dataclass(frozen=True, slots=True)
class DerivedRates:
    """docs/reference.md "Derived figures" of one metrics message: rates per second, overheads in seconds.

    `ingest_overhead` is the time per image beyond the configured delay and preparation;
    `queueing_overhead` the time per scored image beyond scoring itself. None when nothing was scored.
    """

    images: int
    image_rate: float | None
    score_rate: float | None
    ingest_overhead: float | None
    queueing_overhead: float | None


def derived_rates(m: MetricsMessage) -> DerivedRates:
    """The rates and overheads of one window, as the reference's debug notebook derives them.

    >>> from edgemnist.wire.messages import CameraCounts, EdgeConfig, LatencyStats
    >>> lat = lambda mean: LatencyStats(mean, mean, mean, 0.0, (mean,) * 4)
    >>> m = MetricsMessage({"A": CameraCounts((8,) + (0,) * 10, (2,) + (0,) * 10)}, "2020-06-01T12:00:00Z",
    ...                    EdgeConfig(delay=0.05, classify_parallel=2, metrics_duration=10), lat(0.01), lat(0.1))
    >>> r = derived_rates(m)
    >>> r.image_rate, r.score_rate, round(r.ingest_overhead, 3), round(r.queueing_overhead, 3)
    (1.0, 0.5, 0.94, 1.9)
    """
    total, cfg = m.total, m.config
    rate = total / cfg.metrics_duration if cfg.metrics_duration else None
    score = rate / max(1, cfg.classify_parallel) if rate else None
    return DerivedRates(
        images=total,
        image_rate=rate,
        score_rate=score,
        ingest_overhead=1 / rate - cfg.delay - m.prep.mean if rate else None,
        queueing_overhead=1 / score - m.predict.mean if score else None,
    )


def camera_counts(windows: Iterable[MetricsMessage], camera: str) -> tuple[int, int]:
    """(uncertain, total) images of one camera over some metrics messages."""
    unc = tot = 0
    for w in windows:
        c = w.camera_metrics.get(camera)
        if c is not None:
            unc += c.n_uncertain
            tot += c.total
    return unc, tot


def camera_totals(windows: Iterable[MetricsMessage]) -> dict[str, int]:
    """Images scored per camera over some metrics messages."""
    out: dict[str, int] = {}
    for w in windows:
        for cam, c in w.camera_metrics.items():
            out[cam] = out.get(cam, 0) + c.total
    return out


def live_accuracy(windows: Iterable[MetricsMessage], camera: str) -> tuple[int, int]:
    """(correct, labelled) of one camera over some metrics messages, counted over every image it scored.

    Only single-camera messages (what an edge sends) carry counts that belong to one camera.
    """
    right = known = 0
    for w in windows:
        if w.single_camera == camera and w.labelled:
            known += w.labelled
            right += w.correct or 0
    return right, known


def worst_p99(windows: Iterable[MetricsMessage], stage: str) -> float | None:
    """The highest p99 of one stage (`prep` or `predict`) over some windows; None without windows."""
    vals = [w.latency(stage).p99 for w in windows]
    return max(vals) if vals else None


def typed_windows(
    recent: Mapping[str, Sequence[MetricsMessage | Mapping[str, Any]]],
) -> dict[str, list[MetricsMessage]]:
    """Per camera, its windows as messages; a window shared by many cameras is parsed once."""
    seen: dict[int, MetricsMessage] = {}
    out: dict[str, list[MetricsMessage]] = {}
    for cam, windows in recent.items():
        mine = out[cam] = []
        for w in windows:
            got = seen.get(id(w))
            if got is None:
                got = seen[id(w)] = MetricsMessage.of(w)
            mine.append(got)
    return out
