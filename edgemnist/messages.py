"""The two wire messages of REFERENCE.md, key for key, plus our added keys.

Parsing and validation of wire messages live only here. Everything a consumer
relies on is checked: a message that passes `parse_message` can be stored and
shown without further guards. Reference messages (without our added keys) are
accepted; their `id` is None and the hub derives one.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson

from edgemnist._wire import fast_parse
from edgemnist.errors import SchemaError
from edgemnist.uncertainty import CONFIDENCE

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
    "UncertainImage",
    "MetricsMessage",
    "parse_message",
    "utc_timestamp",
    "parse_timestamp",
]

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 1_000_000
LABEL_SLOTS = 11  # ten digits and a slot that is always 0, as the reference sends
# Limits that keep every accepted message storable (SQLite int64, PostgreSQL bigint/integer,
# text without NUL) and cheap to show. A message outside them is dead-lettered with the reason.
MAX_INT = 2**53 - 1  # any integer field: the largest a JSON reader holds exactly, well inside int64
MAX_WINDOW_IMAGES = 10**9  # images one metrics message may count in all: fits a 32-bit column
MAX_CAMERAS_PER_MESSAGE = 100  # an edge sends one camera per window; a gateway may bundle a few
MIN_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)  # timestamps from MIN_TIMESTAMP ..
FUTURE_TOLERANCE = timedelta(days=1)  # .. now + FUTURE_TOLERANCE (clock skew), nothing else


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from, so errors can name it."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        if self.topic is None:
            return "message"
        return f"message at {self.topic}[{self.partition}]@{self.offset}"


def utc_timestamp(when: datetime | float | None = None) -> str:
    """UTC ISO-8601 with microseconds and a trailing Z, as the reference writes it."""
    if when is None:
        when = datetime.now(UTC)
    elif isinstance(when, float | int):
        when = datetime.fromtimestamp(when, UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Parse a wire timestamp into an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class _Check:
    """Field checks that raise SchemaError naming the message origin and key."""

    def __init__(self, obj: Mapping[str, Any], origin: Origin) -> None:
        self.obj = obj
        self.origin = origin

    def fail(self, key: str, why: str) -> SchemaError:
        return SchemaError(f"{self.origin}: key {key!r} {why}")

    def get(self, key: str, *, optional: bool = False) -> Any:
        if key not in self.obj:
            if optional:
                return None
            raise self.fail(key, "is missing")
        return self.obj[key]

    def int_(self, key: str, *, optional: bool = False, lo: int | None = None, hi: int | None = None) -> Any:
        v = self.get(key, optional=optional)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"must be an integer, got {type(v).__name__}")
        hi = MAX_INT if hi is None else hi
        lo = -MAX_INT if lo is None else lo
        if v < lo or v > hi:
            raise self.fail(key, f"is {v}, outside {lo}..{hi}")
        return v

    def float_(
        self, key: str, *, optional: bool = False, lo: float | None = None, hi: float | None = None
    ) -> Any:
        v = self.get(key, optional=optional)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.fail(key, f"must be a finite number, got {v!r:.40}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(key, f"is {v}, outside {lo}..{hi}")
        return float(v)

    def str_(self, key: str, *, optional: bool = False, max_len: int = 256) -> Any:
        v = self.get(key, optional=optional)
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise self.fail(key, f"must be a string, got {type(v).__name__}")
        if len(v) > max_len:
            raise self.fail(key, f"is longer than {max_len} characters")
        if "\x00" in v:
            raise self.fail(key, "contains a NUL character")
        return v

    def timestamp(self, key: str, *, optional: bool = False) -> Any:
        v = self.str_(key, optional=optional, max_len=64)
        if v is None:
            return None
        try:
            when = parse_timestamp(v)
        except (ValueError, OverflowError) as exc:
            raise self.fail(key, f"is not an ISO-8601 timestamp: {v!r}") from exc
        latest = datetime.now(UTC) + FUTURE_TOLERANCE
        if not MIN_TIMESTAMP <= when <= latest:
            raise self.fail(
                key, f"is {v}, outside {MIN_TIMESTAMP:%Y-%m-%d} .. now + {FUTURE_TOLERANCE.days} day"
            )
        return v

    def floats(self, key: str, n: int) -> tuple[float, ...]:
        v = self.get(key)
        if (
            not isinstance(v, list)
            or len(v) != n
            or not set(map(type, v)) <= {int, float}
            or not all(map(math.isfinite, v))
        ):
            raise self.fail(key, f"must be a list of {n} finite numbers")
        return tuple(map(float, v))


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """min, max, mean, std and the p50/p75/p90/p99 of per-image durations in seconds."""

    min: float
    max: float
    mean: float
    std: float
    percentiles: tuple[float, float, float, float]

    @classmethod
    def of(cls, samples: np.ndarray | Sequence[float]) -> LatencyStats:
        a = np.asarray(samples, dtype=np.float64)
        if a.size == 0:
            return cls(0.0, 0.0, 0.0, 0.0, (0.0, 0.0, 0.0, 0.0))
        p50, p75, p90, p99 = (float(x) for x in np.percentile(a, [50, 75, 90, 99]))
        return cls(float(a.min()), float(a.max()), float(a.mean()), float(a.std()), (p50, p75, p90, p99))

    def to_dict(self) -> dict[str, Any]:
        return {
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "percentiles": list(self.percentiles),
        }

    @classmethod
    def from_dict(cls, obj: Any, key: str, origin: Origin) -> LatencyStats:
        if not isinstance(obj, Mapping):
            raise SchemaError(f"{origin}: key {key!r} must be an object")
        c = _Check(obj, origin)
        pct = c.floats("percentiles", 4)
        return cls(c.float_("min"), c.float_("max"), c.float_("mean"), c.float_("std"), pct)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class CameraCounts:
    """Per digit: images scored above the threshold (certain) and at or below it."""

    certain: tuple[int, ...]
    uncertain: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.certain) + sum(self.uncertain)

    def to_dict(self) -> dict[str, list[int]]:
        return {"certain": list(self.certain), "uncertain": list(self.uncertain)}

    @classmethod
    def from_dict(cls, obj: Any, camera: str, origin: Origin) -> CameraCounts:
        if not isinstance(obj, Mapping):
            raise SchemaError(f"{origin}: camera_metrics[{camera!r}] must be an object")
        out = []
        for key in ("certain", "uncertain"):
            v = obj.get(key)
            if (
                not isinstance(v, list)
                or len(v) != LABEL_SLOTS
                or not all(
                    isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_WINDOW_IMAGES for x in v
                )
            ):
                raise SchemaError(
                    f"{origin}: camera_metrics[{camera!r}].{key} must be {LABEL_SLOTS} integers "
                    f"0..{MAX_WINDOW_IMAGES}"
                )
            out.append(tuple(v))
        return cls(out[0], out[1])


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """The edge's submission parameters, echoed in every metrics message."""

    delay: float = 0.0
    repeat: int = 0
    source: Any = 0
    confidence: float = CONFIDENCE
    classify_parallel: int = 1
    metrics_duration: float = 10

    def to_dict(self) -> dict[str, Any]:
        return {
            "delay": self.delay,
            "repeat": self.repeat,
            "source": self.source,
            "confidence": self.confidence,
            "classify_parallel": self.classify_parallel,
            "metrics_duration": self.metrics_duration,
        }

    @classmethod
    def from_dict(cls, obj: Any, origin: Origin) -> EdgeConfig:
        if not isinstance(obj, Mapping):
            raise SchemaError(f"{origin}: key 'config' must be an object")
        c = _Check(obj, origin)
        return cls(
            delay=c.float_("delay", lo=0),
            repeat=c.int_("repeat", lo=0),
            source=obj.get("source", 0),
            confidence=c.float_("confidence", lo=0, hi=1),
            classify_parallel=c.int_("classify_parallel", lo=1),
            metrics_duration=c.float_("metrics_duration", lo=0),
        )


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """The edge's durable queue at window end: messages not yet acknowledged, and dropped."""

    pending: int = 0
    dropped: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"pending": self.pending, "dropped": self.dropped}


@dataclass(frozen=True, slots=True)
class ResultStats:
    """The per-image results topic at window end: results Kafka acknowledged, sends that failed, waiting."""

    acked: int = 0
    failed: int = 0
    pending: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"acked": self.acked, "failed": self.failed, "pending": self.pending}

    @classmethod
    def from_dict(cls, obj: Any, origin: Origin) -> ResultStats:
        if not isinstance(obj, Mapping):
            raise SchemaError(f"{origin}: key 'results' must be an object")
        c = _Check(obj, origin)
        return cls(c.int_("acked", lo=0), c.int_("failed", lo=0), c.int_("pending", lo=0))


@dataclass(frozen=True, slots=True)
class ModelRefusal:
    """A model the edge was offered and refused (bad hash, foreign types, wrong output); the old one serves on."""

    version: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"version": self.version, "reason": self.reason}


def _refusals(v: Any, origin: Origin) -> tuple[ModelRefusal, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) > 100:
        raise SchemaError(f"{origin}: key 'model_refused' must be a list of at most 100 objects")
    out = []
    for item in v:
        if not isinstance(item, Mapping):
            raise SchemaError(f"{origin}: key 'model_refused' must hold objects")
        c = _Check(item, origin)
        out.append(ModelRefusal(c.str_("version", max_len=300), c.str_("reason", max_len=2000)))
    return tuple(out)


def _encode(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


@dataclass(frozen=True, slots=True, eq=False)
class UncertainImage:
    """An image the edge is unsure of, sent home whole for a person to label."""

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
        for key in ("id", "schema", "model_version", "true_class"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
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
        c = _Check(obj, origin)
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
        )

    @classmethod
    def from_json(cls, data: bytes | str, origin: Origin = Origin()) -> UncertainImage:
        msg = parse_message(data, origin)
        if not isinstance(msg, UncertainImage):
            raise SchemaError(f"{origin}: expected an uncertain image, got metrics")
        return msg


def _prepared_image(v: Any, origin: Origin) -> np.ndarray:
    if not isinstance(v, list) or len(v) != 28 or not all(isinstance(r, list) and len(r) == 28 for r in v):
        raise SchemaError(f"{origin}: key 'prepared_image' must be 28 rows of 28 integers")
    flat = list(itertools.chain.from_iterable(v))
    if set(map(type, flat)) != {int}:
        raise SchemaError(f"{origin}: key 'prepared_image' must hold only integers")
    try:
        pixels = bytes(flat)
    except ValueError as exc:
        raise SchemaError(f"{origin}: key 'prepared_image' must hold integers 0..255") from exc
    return np.frombuffer(pixels, dtype=np.uint8).reshape(28, 28)


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

    @property
    def total(self) -> int:
        return sum(c.total for c in self.camera_metrics.values())

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
        return d

    def to_json(self) -> bytes:
        return _encode(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], origin: Origin = Origin()) -> MetricsMessage:
        c = _Check(obj, origin)
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
            oc = _Check(outbox, origin) if isinstance(outbox, Mapping) else None
            if oc is None:
                raise SchemaError(f"{origin}: key 'outbox' must be an object")
            outbox = OutboxStats(oc.int_("pending", lo=0), oc.int_("dropped", lo=0))
        labelled = c.int_("labelled", optional=True, lo=0)
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
            images=c.int_("images", optional=True, lo=0),
            outbox=outbox,
            labelled=labelled,
            correct=correct,
            model_refused=_refusals(obj.get("model_refused"), origin),
            results=None if obj.get("results") is None else ResultStats.from_dict(obj["results"], origin),
            held_back=c.int_("held_back", optional=True, lo=0, hi=MAX_WINDOW_IMAGES),
        )

    @classmethod
    def from_json(cls, data: bytes | str, origin: Origin = Origin()) -> MetricsMessage:
        msg = parse_message(data, origin)
        if not isinstance(msg, MetricsMessage):
            raise SchemaError(f"{origin}: expected metrics, got an uncertain image")
        return msg


def parse_message(data: bytes | str | None, origin: Origin = Origin()) -> UncertainImage | MetricsMessage:
    """Decode and validate one message of either kind; SchemaError says what and where.

    A valid message takes one compiled pass (`edgemnist._wire`); anything that pass refuses is
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
    if "camera_metrics" in obj:
        return MetricsMessage.from_dict(obj, origin)
    if "image" in obj:
        return UncertainImage.from_dict(obj, origin)
    raise SchemaError(f"{origin}: neither metrics ('camera_metrics') nor an uncertain image ('image')")
