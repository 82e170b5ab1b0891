"""Limits, origins, timestamps and the field checks every wire message passes.

The checks raise SchemaError naming where the message came from and which key is bad;
`edgemnist.wire.messages` builds its dataclasses with them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from edgemnist.errors import SchemaError

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
    "Check",
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


class Check:
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
