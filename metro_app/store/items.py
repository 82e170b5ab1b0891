"""Valid records as store rows: built straight from the decoded wire Structs on the hub's hot path.

Building the frozen message dataclasses for every record cost the hub about as much as
decoding it; the store needs only a row. `Item` is that row (a tuple in `METRIC_COLS` or
`IMAGE_COLS` order, without the `received` and `content_hash` columns the store adds) plus
the metrics window's per-camera counts. Items from the fast pass and items from a message
(the slow path, or `Store.write_batch` callers) hold the same values, column for column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from edgemnist.wire.fast import WireImage, WireMetrics, image_epoch, prepared_bytes
from edgemnist.wire.messages import MetricsMessage, UncertainImage
from metro_app.store.camerarows import WindowFacts
from metro_app.store.rows import FLEET_BUCKET_SECONDS, epoch

__all__ = ["METRIC_COLS", "IMAGE_COLS", "Item", "metrics_item", "image_item", "message_item"]

METRIC_COLS = ("msg_id", "camera", "timestamp", "ts", "bucket", "images", "body", "received", "content_hash")
IMAGE_COLS = (
    "msg_id", "camera", "timestamp", "ts", "count", "image", "prepared", "prep_time", "predictions",
    "result_class", "result_probability", "predict_time", "schema", "model_version", "true_class",
    "shadow_version", "shadow_predicted", "shadow_scores", "received", "content_hash",
)  # fmt: skip


def _scores(scores: Any) -> str | None:
    return None if scores is None else orjson.dumps(scores).decode()


@dataclass(slots=True)
class Item:
    """One valid message as its store row; `cameras` (camera, certain, uncertain) for metrics only."""

    id: str
    is_metrics: bool
    row: tuple[Any, ...]
    cameras: tuple[tuple[str, int, int], ...] = ()
    content_hash: str | None = None
    # a window's camera-health facts when decoded already: a cache, not part of the row (not compared)
    facts: WindowFacts | None = field(default=None, compare=False, repr=False)


def metrics_item(m: WireMetrics, body: str) -> Item:
    """A checked metrics Struct carrying its own id, and its JSON as received (stored as is)."""
    assert m.id is not None
    item = _metrics_item(m.id, m.camera_metrics, m.timestamp, body)
    item.facts = WindowFacts.of_struct(m, item.cameras)  # the store's health fold need not decode it again
    return item


def _metrics_item(mid: str, camera_metrics: Any, timestamp: str, body: str) -> Item:
    """The row of a metrics window, from either form of its `camera_metrics` (Structs or dataclasses)."""
    cams = tuple((cam, sum(c.certain), sum(c.uncertain)) for cam, c in camera_metrics.items())
    ts = epoch(timestamp)
    bucket = int(ts // FLEET_BUCKET_SECONDS) * FLEET_BUCKET_SECONDS
    total = sum(c + u for _, c, u in cams)
    return Item(mid, True, (mid, cams[0][0], timestamp, ts, bucket, total, body), cams)


def image_item(m: WireImage) -> Item:
    """A checked image Struct carrying its own id."""
    assert m.id is not None
    row = (
        m.id, m.camera, m.timestamp, image_epoch(m), m.count, m.image, prepared_bytes(m), m.prep_time,
        orjson.dumps(m.predictions).decode(), m.result_class, m.result_probability, m.predict_time,
        m.schema, m.model_version, m.true_class, m.shadow_version, m.shadow_predicted, _scores(m.shadow_scores),
    )  # fmt: skip
    return Item(m.id, False, row)


def message_item(m: MetricsMessage | UncertainImage, body: str | None = None) -> Item:
    """The item of a message dataclass (which must carry an id); `body`: a metrics message's JSON as received."""
    assert m.id is not None
    if isinstance(m, MetricsMessage):
        return _metrics_item(m.id, m.camera_metrics, m.timestamp, body or m.to_json().decode())
    row = (
        m.id, m.camera, m.timestamp, epoch(m.timestamp), m.count, m.image,
        m.prepared_image.astype("uint8").tobytes(), m.prep_time, orjson.dumps(m.predictions).decode(),
        m.result_class, m.result_probability, m.predict_time, m.schema, m.model_version, m.true_class,
        m.shadow_version, m.shadow_predicted, _scores(m.shadow_scores),
    )  # fmt: skip
    return Item(m.id, False, row)
