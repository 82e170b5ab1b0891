"""The two wire messages of docs/reference.md "Messages", key for key, plus our added keys.

Parsing and validation of wire messages live only here. Everything a consumer
relies on is checked: a message that passes `parse_message` can be stored and
shown without further guards. Reference messages (without our added keys) are
accepted; their `id` is None and the hub derives one.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from edgemnist.errors import SchemaError
from edgemnist.prep import CANVAS, SHAPE
from edgemnist.wire.fast import fast_parse
from edgemnist.wire.fields import (
    FUTURE_TOLERANCE,
    LABEL_SLOTS,
    MAX_CAMERAS_PER_MESSAGE,
    MAX_INT,
    MAX_MESSAGE_BYTES,
    MAX_WINDOW_IMAGES,
    MIN_TIMESTAMP,
    SCHEMA_VERSION,
    Check,
    Origin,
    parse_timestamp,
    utc_timestamp,
)
from edgemnist.wire.metricparts import (
    CameraCounts,
    EdgeConfig,
    LatencyStats,
    ModelRefusal,
    OutboxStats,
    ResultStats,
    ShadowStats,
    refusals,
)

__all__ = [
    "SCHEMA_VERSION",
    "MAX_MESSAGE_BYTES",
    "MAX_INT",
    "MAX_WINDOW_IMAGES",
    "MAX_CAMERAS_PER_MESSAGE",
    "MIN_TIMESTAMP",
    "FUTURE_TOLERANCE",
    "LABEL_SLOTS",
    "Origin",
    "LatencyStats",
    "CameraCounts",
    "EdgeConfig",
    "OutboxStats",
    "ResultStats",
    "ModelRefusal",
    "ShadowStats",
    "UncertainImage",
    "MetricsMessage",
    "parse_message",
    "KIND_KEYS",
    "message_kind",
    "utc_timestamp",
    "parse_timestamp",
]


def _encode(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


@dataclass(frozen=True, slots=True, eq=False)
class UncertainImage:
    """An image the edge is unsure of, sent home whole for a person to label.

    Also a frame where a shadow model's top class differs from the serving model's: then the
    ``shadow_*`` keys carry the shadow model's version, class and ten scores.
    """

    count: int
    image: str  # base64 of the PNG frame, ASCII
    camera: str
    timestamp: str
    prepared_image: np.ndarray  # (28, 28) uint8
    prep_time: float
    predictions: tuple[float, ...]
    result_class: int
    result_probability: float
    predict_time: float
    id: str | None = None
    schema: int | None = SCHEMA_VERSION
    model_version: str | None = None
    true_class: int | None = None
    shadow_version: str | None = None
    shadow_predicted: int | None = None
    shadow_scores: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "count": self.count,
            "image": self.image,
            "camera": self.camera,
            "timestamp": self.timestamp,
            "prepared_image": self.prepared_image.tolist(),
            "prep_time": self.prep_time,
            "predictions": list(self.predictions),
            "result_class": self.result_class,
            "result_probability": self.result_probability,
            "predict_time": self.predict_time,
        }
        for key in ("id", "schema", "model_version", "true_class", "shadow_version", "shadow_predicted"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        if self.shadow_scores is not None:
            d["shadow_scores"] = list(self.shadow_scores)
        return d

    def to_json(self) -> bytes:
        return _encode(self.to_dict())

    def image_bytes(self) -> bytes:
        """The PNG frame; raises SchemaError when the base64 is not valid."""
        try:
            return base64.b64decode(self.image, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SchemaError(f"image of {self.id or self.camera}: not valid base64") from exc

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], origin: Origin = Origin()) -> UncertainImage:
        c = Check(obj, origin)
        image = c.str_("image", max_len=MAX_MESSAGE_BYTES)
        prepared = _prepared_image(obj.get("prepared_image"), origin)
        preds = c.floats("predictions", 10)
        return cls(
            count=c.int_("count", lo=0),
            image=image,
            camera=c.str_("camera"),
            timestamp=c.timestamp("timestamp"),
            prepared_image=prepared,
            prep_time=c.float_("prep_time", lo=0),
            predictions=preds,
            result_class=c.int_("result_class", lo=0, hi=9),
            result_probability=c.float_("result_probability", lo=0, hi=1),
            predict_time=c.float_("predict_time", lo=0),
            id=c.str_("id", optional=True),
            schema=c.int_("schema", optional=True, lo=1, hi=2**31 - 1),
            model_version=c.str_("model_version", optional=True),
            true_class=c.int_("true_class", optional=True, lo=0, hi=9),
            shadow_version=c.str_("shadow_version", optional=True, max_len=300),
            shadow_predicted=c.int_("shadow_predicted", optional=True, lo=0, hi=9),
            shadow_scores=None if obj.get("shadow_scores") is None else c.floats("shadow_scores", 10),
        )

    @classmethod
    def from_json(cls, data: bytes | str, origin: Origin = Origin()) -> UncertainImage:
        msg = parse_message(data, origin)
        if not isinstance(msg, UncertainImage):
            raise SchemaError(f"{origin}: expected an uncertain image, got metrics")
        return msg


def _prepared_image(v: Any, origin: Origin) -> np.ndarray:
    if (
        not isinstance(v, list)
        or len(v) != CANVAS
        or not all(isinstance(r, list) and len(r) == CANVAS for r in v)
    ):
        raise SchemaError(f"{origin}: key 'prepared_image' must be {CANVAS} rows of {CANVAS} integers")
    flat = list(itertools.chain.from_iterable(v))
    if set(map(type, flat)) != {int}:
        raise SchemaError(f"{origin}: key 'prepared_image' must hold only integers")
    try:
        pixels = bytes(flat)
    except ValueError as exc:
        raise SchemaError(f"{origin}: key 'prepared_image' must hold integers 0..255") from exc
    return np.frombuffer(pixels, dtype=np.uint8).reshape(SHAPE)


@dataclass(frozen=True, slots=True)
class MetricsMessage:
    """One tumbling window of one edge: counts per digit and latency statistics."""

    camera_metrics: Mapping[str, CameraCounts]
    timestamp: str
    config: EdgeConfig
    prep: LatencyStats
    predict: LatencyStats
    id: str | None = None
    schema: int | None = SCHEMA_VERSION
    model_version: str | None = None
    window_start: str | None = None
    window_end: str | None = None
    images: int | None = None
    outbox: OutboxStats | None = field(default=None)
    labelled: int | None = None  # images in the window whose true class the source knows
    correct: int | None = None  # of those, scored right: live accuracy over every image
    model_refused: tuple[ModelRefusal, ...] | None = None  # models refused since the last window
    results: ResultStats | None = None  # the per-image results topic, when the edge sends one
    held_back: int | None = None  # uncertain images of this window the upload cap kept home (not sent)
    shadow: ShadowStats | None = None  # the shadow model scoring beside the serving one, if any

    @property
    def total(self) -> int:
        return sum(c.total for c in self.camera_metrics.values())

    @property
    def uncertain(self) -> int:
        """Uncertain images over every camera of the window."""
        return sum(c.n_uncertain for c in self.camera_metrics.values())

    @property
    def single_camera(self) -> str | None:
        """The camera when the message names exactly one (what an edge sends), else None.

        Only then do `labelled`, `correct` and the latencies belong to one camera.
        """
        if len(self.camera_metrics) != 1:
            return None
        return next(iter(self.camera_metrics))

    def latency(self, stage: str) -> LatencyStats:
        """The latency statistics of one stage, `prep` or `predict` (the wire's `latency_metrics` keys)."""
        if stage == "prep":
            return self.prep
        if stage == "predict":
            return self.predict
        raise KeyError(f"no latency stage {stage!r}; the stages are prep and predict")

    @classmethod
    def of(cls, obj: MetricsMessage | Mapping[str, Any], origin: Origin = Origin()) -> MetricsMessage:
        """`obj` itself, or the message a stored or served wire dict holds (checked like any message)."""
        return obj if isinstance(obj, MetricsMessage) else cls.from_dict(obj, origin)

    @property
    def accuracy(self) -> float | None:
        """Live accuracy over every labelled image of the window; None when the source knows no labels."""
        if not self.labelled or self.correct is None:
            return None
        return self.correct / self.labelled

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "camera_metrics": {cam: c.to_dict() for cam, c in self.camera_metrics.items()},
            "timestamp": self.timestamp,
            "config": self.config.to_dict(),
            "latency_metrics": {"prep": self.prep.to_dict(), "predict": self.predict.to_dict()},
        }
        for key in (
            "id",
            "schema",
            "model_version",
            "window_start",
            "window_end",
            "images",
            "labelled",
            "correct",
            "held_back",
        ):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        if self.outbox is not None:
            d["outbox"] = self.outbox.to_dict()
        if self.model_refused:
            d["model_refused"] = [r.to_dict() for r in self.model_refused]
        if self.results is not None:
            d["results"] = self.results.to_dict()
        if self.shadow is not None:
            d["shadow"] = self.shadow.to_dict()
        return d

    def to_json(self) -> bytes:
        return _encode(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], origin: Origin = Origin()) -> MetricsMessage:
        c = Check(obj, origin)
        cams = obj.get("camera_metrics")
        if not isinstance(cams, Mapping) or not cams:
            raise SchemaError(f"{origin}: key 'camera_metrics' must be a non-empty object")
        if len(cams) > MAX_CAMERAS_PER_MESSAGE:
            raise SchemaError(
                f"{origin}: key 'camera_metrics' names {len(cams)} cameras, "
                f"more than the {MAX_CAMERAS_PER_MESSAGE} allowed per message"
            )
        counts = {}
        for cam, v in cams.items():
            if len(cam) > 256 or "\x00" in cam:
                raise SchemaError(
                    f"{origin}: camera name {cam[:40]!r} is longer than 256 characters or has a NUL"
                )
            counts[cam] = CameraCounts.from_dict(v, cam, origin)
        total = sum(c.total for c in counts.values())
        if total > MAX_WINDOW_IMAGES:
            raise SchemaError(
                f"{origin}: key 'camera_metrics' counts {total} images, more than {MAX_WINDOW_IMAGES}"
            )
        lat = obj.get("latency_metrics")
        if not isinstance(lat, Mapping):
            raise SchemaError(f"{origin}: key 'latency_metrics' must be an object")
        outbox = obj.get("outbox")
        if outbox is not None:
            oc = Check(outbox, origin) if isinstance(outbox, Mapping) else None
            if oc is None:
                raise SchemaError(f"{origin}: key 'outbox' must be an object")
            outbox = OutboxStats(oc.int_("pending", lo=0), oc.int_("dropped", lo=0))
        images = c.int_("images", optional=True, lo=0)
        # a labelled image is one of the window's images: never more than it scored
        labelled = c.int_("labelled", optional=True, lo=0, hi=total if images is None else min(images, total))
        correct = c.int_("correct", optional=True, lo=0, hi=labelled)
        return cls(
            camera_metrics=counts,
            timestamp=c.timestamp("timestamp"),
            config=EdgeConfig.from_dict(c.get("config"), origin),
            prep=LatencyStats.from_dict(lat.get("prep"), "latency_metrics.prep", origin),
            predict=LatencyStats.from_dict(lat.get("predict"), "latency_metrics.predict", origin),
            id=c.str_("id", optional=True),
            schema=c.int_("schema", optional=True, lo=1, hi=2**31 - 1),
            model_version=c.str_("model_version", optional=True),
            window_start=c.timestamp("window_start", optional=True),
            window_end=c.timestamp("window_end", optional=True),
            images=images,
            outbox=outbox,
            labelled=labelled,
            correct=correct,
            model_refused=refusals(obj.get("model_refused"), origin),
            results=None if obj.get("results") is None else ResultStats.from_dict(obj["results"], origin),
            held_back=c.int_("held_back", optional=True, lo=0, hi=MAX_WINDOW_IMAGES),
            shadow=None if obj.get("shadow") is None else ShadowStats.from_dict(obj["shadow"], origin),
        )

    @classmethod
    def from_json(cls, data: bytes | str, origin: Origin = Origin()) -> MetricsMessage:
        msg = parse_message(data, origin)
        if not isinstance(msg, MetricsMessage):
            raise SchemaError(f"{origin}: expected metrics, got an uncertain image")
        return msg


def parse_message(data: bytes | str | None, origin: Origin = Origin()) -> UncertainImage | MetricsMessage:
    """Decode and validate one message of either kind; SchemaError says what and where.

    A valid message takes one compiled pass (`edgemnist.wire.fast`); anything that pass refuses is
    checked key by key here, which accepts it after all or names the key and the reason.
    """
    if data is None:
        raise SchemaError(f"{origin}: empty value (tombstone)")
    if len(data) > MAX_MESSAGE_BYTES:
        raise SchemaError(f"{origin}: {len(data)} bytes, more than the {MAX_MESSAGE_BYTES} allowed")
    fast = fast_parse(data, datetime.now(UTC) + FUTURE_TOLERANCE, _THIS)
    if fast is not None:
        return fast  # type: ignore[no-any-return]
    return _parse_slow(data, origin)


_THIS = sys.modules[__name__]


def _parse_slow(data: bytes | str, origin: Origin) -> UncertainImage | MetricsMessage:
    """orjson, then every key checked in Python: decides what the fast pass refused, naming the reason."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"{origin}: not JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise SchemaError(f"{origin}: JSON {type(obj).__name__}, expected an object")
    kind = message_kind(obj)
    if kind is None:
        raise SchemaError(f"{origin}: neither metrics ('camera_metrics') nor an uncertain image ('image')")
    return kind.from_dict(obj, origin)


#: The key that tells each kind of message apart on the wire, as the reference splits them.
KIND_KEYS: dict[type[MetricsMessage] | type[UncertainImage], str] = {
    MetricsMessage: "camera_metrics",
    UncertainImage: "image",
}


def message_kind(obj: Mapping[str, Any]) -> type[MetricsMessage] | type[UncertainImage] | None:
    """Which message a decoded wire object is: metrics by `camera_metrics`, else an image by `image`.

    >>> message_kind({"camera_metrics": {}, "image": ""}).__name__, message_kind({"count": 1})
    ('MetricsMessage', None)
    """
    for kind, key in KIND_KEYS.items():
        if key in obj:
            return kind
    return None
