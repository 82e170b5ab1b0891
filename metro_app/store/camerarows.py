"""A camera's health row, folded one metrics window (or uncertain image) at a time (pure, no store).

The row holds what `metro_app.views.health.camera_health` computes from scratch: all-time
counts, and the figures of the camera's newest `RECENT` windows (rates, uncertain share, live
accuracy, p99s, held back) plus its newest window's outbox, model and time. Folding a window
costs the same however many windows the camera has sent, so the hub keeps every camera's health
as windows arrive instead of re-reading them per request.
"""

from __future__ import annotations

from typing import Any

import orjson

from edgemnist.wire.messages import MetricsMessage

__all__ = ["RECENT", "ACTIVE_WINDOWS", "ACTIVE_MIN_SECONDS", "empty_row", "window_figures", "fold_window",
           "fold_image"]  # fmt: skip

RECENT = 5  # windows per camera that the rates, shares, accuracy and p99s cover (as CameraHealth did)
ACTIVE_WINDOWS = 3  # a camera is active until this many of its windows pass without one arriving
ACTIVE_MIN_SECONDS = 30.0

# the figures of one window for one camera, in `recent` (JSON lists, to stay small):
# id, uncertain, images, labelled, correct, seconds, prep p99, predict p99, held back
_ID, _UNC, _TOT, _KNOWN, _RIGHT, _SECS, _PREP, _PRED, _HELD = range(9)


def empty_row(camera: str) -> dict[str, Any]:
    """The row of a camera the store has seen nothing of yet."""
    return {
        "camera": camera, "seq": 0, "windows": 0, "images": 0, "uncertain": 0, "stored": 0, "known": 0,
        "right": 0, "recent": "[]", "last_seen": None, "received": None, "expires": None,
        "uncertain_share": None, "accuracy": None, "accuracy_samples": 0, "images_per_second": None,
        "prep_p99": None, "predict_p99": None, "p99": None, "outbox_pending": None, "outbox_dropped": None,
        "model_version": None, "held_back": 0,
    }  # fmt: skip


def window_figures(metric_id: int, w: MetricsMessage, camera: str) -> list[Any]:
    """One window's figures for one of the cameras it names.

    Live accuracy counts only single-camera windows (what an edge sends): a window naming many
    cameras carries one `labelled`/`correct` pair that belongs to none of them.
    """
    c = w.camera_metrics[camera]
    mine = w.single_camera == camera and bool(w.labelled)
    return [
        metric_id, c.n_uncertain, c.total, (w.labelled or 0) if mine else 0, (w.correct or 0) if mine else 0,
        w.config.metrics_duration, w.prep.p99, w.predict.p99, w.held_back or 0,
    ]  # fmt: skip


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _max(values: list[float]) -> float | None:
    return max(values) if values else None


def fold_window(row: dict[str, Any], metric_id: int, w: MetricsMessage, received: float) -> dict[str, Any]:
    """`row` after the camera's window `w` (stored as metrics row `metric_id`, newer than any before).

    >>> from metro_app.samples import make_metrics
    >>> row = empty_row("CamA")
    >>> for k in range(7):
    ...     row = fold_window(row, k + 1, make_metrics("CamA", k, correct=18), received=100.0)
    >>> row["windows"], row["images"], row["accuracy"], len(orjson.loads(row["recent"]))
    (7, 140, 0.9, 5)
    """
    camera = row["camera"]
    c = w.camera_metrics[camera]
    recent = [*orjson.loads(row["recent"]), window_figures(metric_id, w, camera)][-RECENT:]
    unc = sum(f[_UNC] for f in recent)
    tot = sum(f[_TOT] for f in recent)
    known = sum(f[_KNOWN] for f in recent)
    prep, pred = _max([f[_PREP] for f in recent]), _max([f[_PRED] for f in recent])
    secs = w.config.metrics_duration
    return row | {
        "seq": metric_id,
        "windows": row["windows"] + 1,
        "images": row["images"] + c.total,
        "uncertain": row["uncertain"] + c.n_uncertain,
        "recent": orjson.dumps(recent).decode(),
        "last_seen": w.timestamp,
        "received": received,
        "expires": received + max(ACTIVE_MIN_SECONDS, ACTIVE_WINDOWS * secs),
        "uncertain_share": _ratio(unc, tot),
        "accuracy": _ratio(sum(f[_RIGHT] for f in recent), known),
        "accuracy_samples": known,
        "images_per_second": _ratio(tot, sum(f[_SECS] for f in recent)),
        "prep_p99": prep,
        "predict_p99": pred,
        "p99": None if prep is None or pred is None else max(prep, pred),
        "outbox_pending": w.outbox.pending if w.outbox is not None else None,
        "outbox_dropped": w.outbox.dropped if w.outbox is not None else None,
        "model_version": w.model_version,
        "held_back": sum(f[_HELD] for f in recent),
    }


def fold_image(row: dict[str, Any], result_class: int, true_class: int | None) -> dict[str, Any]:
    """`row` after one more uncertain image of the camera was stored."""
    known = true_class is not None
    return row | {
        "stored": row["stored"] + 1,
        "known": row["known"] + known,
        "right": row["right"] + (known and result_class == true_class),
    }
