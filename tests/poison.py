"""Hypothesis strategies for poison: hub messages with extreme values in a few fields (issue 14).

Support for the property tests of the hub's checks (`tests/unit/metro_app/ingest/test_poison.py`)
and of the compiled wire pass (`tests/unit/edgemnist/wire/test_fast.py`).
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from hypothesis import strategies as st

from edgemnist.wire.messages import utc_timestamp
from metro_app.samples import make_image, make_metrics

INTS = [-1, 0, 1, 9, 10, 2**31 - 1, 2**31, 2**53 - 1, 2**53, 2**63 - 1, 2**63, 2**64, 10**30]
FLOATS = [0.0, -0.0, 5e-324, 1e-300, 0.5, 1.0, 1.5, 1e308, -1e308, float("nan"), float("inf")]
TEXTS = [
    "",
    "\x00",
    "a\x00b",
    "x" * 257,
    "é" * 256,
    "\ud800",
    "😀" * 100,
    "'; DROP TABLE labels; --",
    "Cam/../x",
]
STAMPS = [
    "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00Z",
    "1999-12-31T23:59:59.999999Z",
    "2000-01-01T00:00:00Z",
    "2000-01-01T00:00:00+14:00",
    "2024-02-30T00:00:00Z",
    "20240101",
    "not a time",
    utc_timestamp(),
    utc_timestamp(2**35),  # year 3058
]
SIDES = [0, 1, 28, 1024, 1025, 4096, 2**31]
VALUES = st.sampled_from(INTS) | st.sampled_from(FLOATS) | st.sampled_from(TEXTS) | st.sampled_from(STAMPS)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one row of pixel data (never decoded when too big)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (min(width, 4096) + 7) // 8)
    idat = zlib.compress(row * min(height, 4096))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


IMAGE_KEYS = {"count": INTS, "camera": TEXTS, "timestamp": STAMPS, "prep_time": FLOATS,
              "result_class": INTS, "result_probability": FLOATS, "predict_time": FLOATS, "id": TEXTS,
              "schema": INTS, "model_version": TEXTS, "true_class": INTS}  # fmt: skip
METRICS_KEYS = {"timestamp": STAMPS, "id": TEXTS, "schema": INTS, "model_version": TEXTS,
                "window_start": STAMPS, "window_end": STAMPS, "images": INTS, "labelled": INTS,
                "correct": INTS}  # fmt: skip


def extreme(pool: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly an extreme value of the field's own type, sometimes one of any type."""
    return st.integers(0, 4).flatmap(lambda k: VALUES if k == 0 else st.sampled_from(pool))


@st.composite
def poison_image(draw: st.DrawFn, n: int) -> dict[str, Any]:
    d = make_image("Prop", n, run=f"x{n}").to_dict()
    for key in draw(st.lists(st.sampled_from(sorted(IMAGE_KEYS)), min_size=1, max_size=3, unique=True)):
        d[key] = draw(extreme(IMAGE_KEYS[key]))
    if draw(st.booleans()):
        d["predictions"][draw(st.integers(0, 9))] = draw(extreme(FLOATS))
    if draw(st.booleans()):
        d["prepared_image"][draw(st.integers(0, 27))][draw(st.integers(0, 27))] = draw(st.sampled_from(INTS))
    if draw(st.booleans()):
        w, h = draw(st.sampled_from(SIDES)), draw(st.sampled_from(SIDES))
        d["image"] = base64.b64encode(png_header_only(w, h)).decode()
    return d


@st.composite
def poison_metrics(draw: st.DrawFn, n: int) -> dict[str, Any]:
    d = make_metrics("Prop", n, run=f"x{n}").to_dict()
    for key in draw(st.lists(st.sampled_from(sorted(METRICS_KEYS)), min_size=1, max_size=3, unique=True)):
        d[key] = draw(extreme(METRICS_KEYS[key]))
    if draw(st.booleans()):
        n_cams = draw(st.sampled_from([0, 1, 2, 100, 101]))
        name = draw(st.sampled_from(["C", *TEXTS]))
        slots = [draw(st.sampled_from(INTS)) for _ in range(11)]
        d["camera_metrics"] = {f"{name}{c}": {"certain": slots, "uncertain": [0] * 11} for c in range(n_cams)}
    section = draw(st.sampled_from(["config", "prep", "predict", "outbox", "none"]))
    if section == "config":
        d["config"][draw(st.sampled_from(sorted(d["config"])))] = draw(extreme(INTS + FLOATS))
    elif section in ("prep", "predict"):
        stats = d["latency_metrics"][section]
        key = draw(st.sampled_from(["min", "max", "mean", "std", "percentiles"]))
        stats[key] = [draw(extreme(FLOATS))] * 4 if key == "percentiles" else draw(extreme(FLOATS))
    elif section == "outbox":
        d["outbox"] = {"pending": draw(st.sampled_from(INTS)), "dropped": draw(st.sampled_from(INTS))}
    if draw(st.booleans()):
        d["model_refused"] = [{"version": draw(st.sampled_from(TEXTS)), "reason": "bad hash"}]
    return d
