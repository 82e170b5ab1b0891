"""The parts of a metrics message: counts per camera, latency statistics, the edge's state.

Each part parses itself from a wire dict (raising SchemaError that names the key) and carries
the figures derived from it (totals, p99), so consumers never index the wire dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemnist.errors import SchemaError
from edgemnist.uncertainty import CONFIDENCE
from edgemnist.wire.fields import LABEL_SLOTS, MAX_WINDOW_IMAGES, Check, Origin

__all__ = [
    "LatencyStats",
    "CameraCounts",
    "EdgeConfig",
    "OutboxStats",
    "ResultStats",
    "ModelRefusal",
    "ShadowStats",
    "refusals",
]


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """min, max, mean, std and the p50/p75/p90/p99 of per-image durations in seconds."""

    min: float
    max: float
    mean: float
    std: float
    percentiles: tuple[float, float, float, float]

    @property
    def p99(self) -> float:
        """The 99th percentile: the figure a latency budget is checked against."""
        return self.percentiles[3]

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
        c = Check(obj, origin)
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

    @property
    def n_uncertain(self) -> int:
        """Images scored at or below the threshold: the ones that went home."""
        return sum(self.uncertain)

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
        c = Check(obj, origin)
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
        c = Check(obj, origin)
        return cls(c.int_("acked", lo=0), c.int_("failed", lo=0), c.int_("pending", lo=0))


@dataclass(frozen=True, slots=True)
class ShadowStats:
    """A window's shadow model: images it scored beside the serving one, the top classes both gave, its
    right answers (only where the source knows labels), and disagreements the per-window cap kept home."""

    version: str
    images: int = 0
    agree: int = 0
    correct: int | None = None
    held_back: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": self.version, "images": self.images, "agree": self.agree}
        if self.correct is not None:
            d["correct"] = self.correct
        d["held_back"] = self.held_back
        return d

    @classmethod
    def from_dict(cls, obj: Any, origin: Origin) -> ShadowStats:
        if not isinstance(obj, Mapping):
            raise SchemaError(f"{origin}: key 'shadow' must be an object")
        c = Check(obj, origin)
        images = c.int_("images", lo=0)
        return cls(
            c.str_("version", max_len=300),
            images,
            c.int_("agree", lo=0, hi=images),
            c.int_("correct", optional=True, lo=0, hi=images),
            c.int_("held_back", optional=True, lo=0) or 0,
        )


@dataclass(frozen=True, slots=True)
class ModelRefusal:
    """A model the edge was offered and refused (bad hash, foreign types, wrong output); the old one serves on."""

    version: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"version": self.version, "reason": self.reason}


def refusals(v: Any, origin: Origin) -> tuple[ModelRefusal, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) > 100:
        raise SchemaError(f"{origin}: key 'model_refused' must be a list of at most 100 objects")
    out = []
    for item in v:
        if not isinstance(item, Mapping):
            raise SchemaError(f"{origin}: key 'model_refused' must hold objects")
        c = Check(item, origin)
        out.append(ModelRefusal(c.str_("version", max_len=300), c.str_("reason", max_len=2000)))
    return tuple(out)
