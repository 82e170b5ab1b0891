"""Conversions between wire messages and store rows."""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from edgemnist.prep import SHAPE
from edgemnist.wire.messages import MetricsMessage, UncertainImage, parse_timestamp, utc_timestamp

__all__ = [
    "FLEET_BUCKET_SECONDS",
    "metrics_row",
    "image_row",
    "image_row_to_dict",
    "camera_row",
    "iso",
    "label_dict",
]

FLEET_BUCKET_SECONDS = 10


def epoch(ts: str) -> float:
    if ts[-1:] == "Z" and ts.count("Z") == 1:  # the wire form: Python reads the Z as UTC itself
        return datetime.fromisoformat(ts).timestamp()
    return parse_timestamp(ts).timestamp()


def metrics_row(m: MetricsMessage, now: float, body: str | None = None) -> dict[str, Any]:
    """A metrics_windows row; `body` is the message's JSON as received, when it carries its own id."""
    ts = epoch(m.timestamp)
    return {
        "msg_id": m.id,
        "camera": next(iter(m.camera_metrics)),
        "timestamp": m.timestamp,
        "ts": ts,
        "bucket": int(ts // FLEET_BUCKET_SECONDS) * FLEET_BUCKET_SECONDS,
        "images": m.total,
        "received": now,
        "body": body or m.to_json().decode(),
    }


def image_row(m: UncertainImage, now: float) -> dict[str, Any]:
    return {
        "msg_id": m.id,
        "camera": m.camera,
        "timestamp": m.timestamp,
        "ts": epoch(m.timestamp),
        "count": m.count,
        "image": m.image,
        "prepared": m.prepared_image.astype(np.uint8).tobytes(),
        "prep_time": m.prep_time,
        "predictions": orjson.dumps(m.predictions).decode(),
        "result_class": m.result_class,
        "result_probability": m.result_probability,
        "predict_time": m.predict_time,
        "schema": m.schema,
        "model_version": m.model_version,
        "true_class": m.true_class,
        "shadow_version": m.shadow_version,
        "shadow_predicted": m.shadow_predicted,
        "shadow_scores": None if m.shadow_scores is None else orjson.dumps(m.shadow_scores).decode(),
        "received": now,
    }


def image_row_to_dict(row: Any) -> dict[str, Any]:
    """The uncertain-image wire dict (docs/reference.md "Messages" keys plus ours) of a stored row."""
    msg = UncertainImage(
        count=row.count,
        image=row.image,
        camera=row.camera,
        timestamp=row.timestamp,
        prepared_image=np.frombuffer(row.prepared, dtype=np.uint8).reshape(SHAPE),
        prep_time=row.prep_time,
        predictions=tuple(json.loads(row.predictions)),
        result_class=row.result_class,
        result_probability=row.result_probability,
        predict_time=row.predict_time,
        id=row.msg_id,
        schema=row.schema,
        model_version=row.model_version,
        true_class=row.true_class,
        shadow_version=getattr(row, "shadow_version", None),
        shadow_predicted=getattr(row, "shadow_predicted", None),
        shadow_scores=None
        if getattr(row, "shadow_scores", None) is None
        else tuple(json.loads(row.shadow_scores)),
    )
    return msg.to_dict()


def camera_row(metric_id: int, camera: str, c: Any) -> dict[str, Any]:
    return {
        "metric_id": metric_id,
        "camera": camera,
        "certain": sum(c.certain),
        "uncertain": sum(c.uncertain),
    }


def iso(t: float) -> str:
    return utc_timestamp(t) if math.isfinite(t) else ""


def label_dict(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "image_id": row["image_id"],
        "label": row["label"],
        "labeller": row["labeller"],
        "created": iso(row["created"]),
        "model_version": row["model_version"],
        "previous_prediction": row["previous_prediction"],
        "verified": row.get("verified"),
    }


def png_bytes(row: Any) -> bytes:
    """The stored frame's PNG bytes (validated as PNG when it was stored)."""
    return base64.b64decode(row.image)
