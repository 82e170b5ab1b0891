"""A camera's health row, folded one metrics window (or uncertain image) at a time (pure, no store).

The row holds what `metro_app.views.health.camera_health` computes from scratch: all-time
counts, and the figures of the camera's newest `RECENT` windows (rates, uncertain share, live
accuracy, p99s, held back) plus its newest window's outbox, model and time. Folding a window
costs the same however many windows the camera has sent, so the hub keeps every camera's health
as windows arrive instead of re-reading them per request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from edgemnist.wire.fast import WireMetrics, fast_decode
from edgemnist.wire.messages import MetricsMessage

__all__ = ["RECENT", "ACTIVE_WINDOWS", "ACTIVE_MIN_SECONDS", "WindowFacts", "window_facts", "empty_row",
           "window_figures", "opened", "add_window", "finish", "fold_images", "recent_span"]  # fmt: skip

RECENT = 5  # windows per camera that the rates, shares, accuracy and p99s cover (as CameraHealth did)
ACTIVE_WINDOWS = 3  # a camera is active until this many of its windows pass without one arriving
ACTIVE_MIN_SECONDS = 30.0

# the figures of one window for one camera, in `recent` (JSON lists, to stay small): row id, uncertain,
# images, labelled, correct, seconds, prep p99, predict p99, held back, timestamp, message id
_ID, _UNC, _TOT, _KNOWN, _RIGHT, _SECS, _PREP, _PRED, _HELD, _TS, _MSG = range(11)


_LATEST = datetime(9999, 12, 31, tzinfo=UTC)  # a stored window was checked on arrival; any time passes now


@dataclass(frozen=True, slots=True)
class WindowFacts:
    """What a camera's health needs of one stored metrics window; `counts`: camera -> (uncertain, images)."""

    counts: dict[str, tuple[int, int]]
    timestamp: str
    id: str | None
    seconds: float
    prep_p99: float
    predict_p99: float
    labelled: int | None
    correct: int | None
    held_back: int | None
    outbox: tuple[int, int] | None
    model_version: str | None

    @property
    def single_camera(self) -> str | None:
        return next(iter(self.counts)) if len(self.counts) == 1 else None

    @classmethod
    def of_message(cls, w: MetricsMessage) -> WindowFacts:
        return cls(
            {cam: (c.n_uncertain, c.total) for cam, c in w.camera_metrics.items()}, w.timestamp, w.id,
            w.config.metrics_duration, w.prep.p99, w.predict.p99, w.labelled, w.correct, w.held_back,
            None if w.outbox is None else (w.outbox.pending, w.outbox.dropped), w.model_version,
        )  # fmt: skip

    @classmethod
    def of_struct(cls, w: WireMetrics, cams: tuple[tuple[str, int, int], ...] | None = None) -> WindowFacts:
        """The facts of a decoded window; `cams`: its (camera, certain, uncertain) sums, if made already."""
        lat = w.latency_metrics
        if cams is None:
            cams = tuple((cam, sum(c.certain), sum(c.uncertain)) for cam, c in w.camera_metrics.items())
        counts = {cam: (u, c + u) for cam, c, u in cams}
        return cls(
            counts, w.timestamp, w.id, w.config.metrics_duration, lat.prep.percentiles[3],
            lat.predict.percentiles[3], w.labelled, w.correct, w.held_back,
            None if w.outbox is None else (w.outbox.pending, w.outbox.dropped), w.model_version,
        )  # fmt: skip


def window_facts(body: str) -> WindowFacts:
    """The facts of a stored window's JSON: the compiled decoder, else (a window naming many cameras,
    say) the message classes."""
    m = fast_decode(body, _LATEST)
    if isinstance(m, WireMetrics):
        return WindowFacts.of_struct(m)
    return WindowFacts.of_message(MetricsMessage.of(orjson.loads(body)))


def empty_row(camera: str) -> dict[str, Any]:
    """The row of a camera the store has seen nothing of yet."""
    return {
        "camera": camera, "seq": 0, "windows": 0, "images": 0, "uncertain": 0, "stored": 0, "known": 0,
        "right": 0, "recent": "[]", "last_seen": None, "received": None, "expires": None,
        "uncertain_share": None, "accuracy": None, "accuracy_samples": 0, "images_per_second": None,
        "prep_p99": None, "predict_p99": None, "p99": None, "outbox_pending": None, "outbox_dropped": None,
        "model_version": None, "held_back": 0,
    }  # fmt: skip


def window_figures(metric_id: int, w: WindowFacts, camera: str) -> list[Any]:
    """One window's figures for one of the cameras it names.

    Live accuracy counts only single-camera windows (what an edge sends): a window naming many
    cameras carries one `labelled`/`correct` pair that belongs to none of them.
    """
    unc, tot = w.counts[camera]
    mine = w.single_camera == camera and bool(w.labelled)
    return [
        metric_id, unc, tot, (w.labelled or 0) if mine else 0, (w.correct or 0) if mine else 0,
        w.seconds, w.prep_p99, w.predict_p99, w.held_back or 0, w.timestamp, w.id,
    ]  # fmt: skip


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _max(values: list[float]) -> float | None:
    return max(values) if values else None


def opened(row: dict[str, Any]) -> dict[str, Any]:
    """A copy of `row` to fold windows into: its `recent` windows as a list (`finish` closes it)."""
    return row | {"recent": orjson.loads(row["recent"])}


def add_window(row: dict[str, Any], metric_id: int, w: WindowFacts, received: float) -> dict[str, Any]:
    """Fold the camera's window `w` into an `opened` row, in place: its counts and its recent windows;
    the figures over the recent windows wait for `finish`, so a batch holding many windows of one
    camera computes them once."""
    camera = row["camera"]
    unc_now, tot_now = w.counts[camera]
    recent = row["recent"]
    recent.append(window_figures(metric_id, w, camera))
    if len(recent) > RECENT:
        del recent[: len(recent) - RECENT]
    row["seq"] = metric_id
    row["windows"] += 1
    row["images"] += tot_now
    row["uncertain"] += unc_now
    row["last_seen"] = w.timestamp
    row["received"] = received
    row["expires"] = received + max(ACTIVE_MIN_SECONDS, ACTIVE_WINDOWS * w.seconds)
    row["outbox_pending"] = w.outbox[0] if w.outbox is not None else None
    row["outbox_dropped"] = w.outbox[1] if w.outbox is not None else None
    row["model_version"] = w.model_version
    return row


def finish(row: dict[str, Any]) -> dict[str, Any]:
    """An `opened` row as stored: the figures over its recent windows, `recent` as JSON again.

    >>> from metro_app.samples import make_metrics
    >>> row = opened(empty_row("CamA"))
    >>> for k in range(7):
    ...     row = add_window(row, k + 1, WindowFacts.of_message(make_metrics("CamA", k, correct=18)), 100.0)
    >>> row = finish(row)
    >>> row["windows"], row["images"], row["accuracy"], len(orjson.loads(row["recent"]))
    (7, 140, 0.9, 5)
    """
    recent = row["recent"]
    if not recent:
        return row | {"recent": "[]"}
    unc = sum(f[_UNC] for f in recent)
    tot = sum(f[_TOT] for f in recent)
    known = sum(f[_KNOWN] for f in recent)
    prep, pred = _max([f[_PREP] for f in recent]), _max([f[_PRED] for f in recent])
    return row | {
        "recent": orjson.dumps(recent).decode(),
        "uncertain_share": _ratio(unc, tot),
        "accuracy": _ratio(sum(f[_RIGHT] for f in recent), known),
        "accuracy_samples": known,
        "images_per_second": _ratio(tot, sum(f[_SECS] for f in recent)),
        "prep_p99": prep,
        "predict_p99": pred,
        "p99": None if prep is None or pred is None else max(prep, pred),
        "held_back": sum(f[_HELD] for f in recent),
    }


def fold_images(rows: dict[str, dict[str, Any]], images: Iterable[tuple[str, int, int | None]]) -> None:
    """Fold uncertain images (camera, result class, true class) into `rows` (camera -> row), in place:
    each camera's `stored` grows by its images, `known` by those with a true class, `right` by those
    whose result was that class.

    >>> rows = {"A": empty_row("A")}
    >>> fold_images(rows, [("A", 3, 3), ("A", 3, None), ("B", 1, 2), ("A", 4, 5)])
    >>> [(r["camera"], r["stored"], r["known"], r["right"]) for r in rows.values()]
    [('A', 3, 2, 1), ('B', 1, 1, 0)]
    """
    counts: dict[str, list[int]] = {}
    for cam, result, true in images:
        c = counts.get(cam)
        if c is None:
            c = counts[cam] = [0, 0, 0]
        c[0] += 1
        if true is not None:
            c[1] += 1
            if result == true:
                c[2] += 1
    for cam, (stored, known, right) in counts.items():
        row = rows.get(cam) or empty_row(cam)
        rows[cam] = row | {"stored": row["stored"] + stored, "known": row["known"] + known,
                           "right": row["right"] + right}  # fmt: skip


def recent_span(row: dict[str, Any]) -> tuple[int, str, str | None]:
    """(windows, the oldest one's timestamp, the newest one's message id) of a row's recent windows."""
    recent = orjson.loads(row["recent"])
    if not recent:
        return 0, "", None
    return len(recent), recent[0][_TS], recent[-1][_MSG]
