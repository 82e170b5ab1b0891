"""Validation of one Kafka record: a stored-ready message with an id, or a dead letter."""

from __future__ import annotations

import binascii
import dataclasses
import logging
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from edgemnist import png
from edgemnist.errors import SchemaError
from edgemnist.wire.fast import WireMetrics, fast_decode
from edgemnist.wire.messages import (
    FUTURE_TOLERANCE,
    MAX_MESSAGE_BYTES,
    MetricsMessage,
    Origin,
    UncertainImage,
    parse_message,
)
from metro_app.store import DeadLetter
from metro_app.store.items import Item, image_item, message_item, metrics_item

__all__ = ["MAX_IMAGE_SIDE", "RecordLike", "Validator", "derived_id", "Valid"]

log = logging.getLogger(__name__)
Valid = MetricsMessage | UncertainImage
# Camera frames are 28x28; a frame from a PNG folder may be larger. Checked in the PNG header,
# before anything is decoded, so a small file cannot make the hub allocate gigabytes.
MAX_IMAGE_SIDE = 1024


class RecordLike(Protocol):
    """What the hub reads of a Kafka ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def derived_id(topic: str, partition: int, offset: int) -> str:
    """A stable id for a reference message that has none: where Kafka keeps it."""
    return f"{topic}:{partition}:{offset}"


# bits per pixel per PNG colour type, for each allowed bit depth (PNG spec, table 11.1)
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _raw_size(width: int, height: int, bits: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines (a filter byte per row) the IDAT stream must inflate to."""
    if not interlaced:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w and h:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def _png_bytes(msg: UncertainImage, origin: Origin | _LazyOrigin) -> bytes:
    try:
        return binascii.a2b_base64(msg.image, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise SchemaError(f"{origin}: key 'image' is not valid base64") from exc


def _check_png(msg: UncertainImage, origin: Origin | _LazyOrigin) -> None:
    """A complete, well-formed PNG of bounded size, checked without decoding pixels.

    Reads the header first (a small file claiming a huge image is refused before anything is
    inflated), verifies every chunk's CRC, requires IHDR first, PLTE for palette images, IDAT and
    IEND, then inflates the IDAT stream with zlib, bounded by the size the header implies, and
    checks it holds exactly that many bytes with a valid filter type on every row.
    """
    data = _png_bytes(msg, origin)
    if not data.startswith(png.SIGNATURE):
        raise SchemaError(f"{origin}: key 'image' is not a PNG (bad signature)")
    head = png.read_header(data)
    if head is None:
        raise SchemaError(f"{origin}: key 'image' is not a readable PNG (no IHDR header)")
    width, height = head.width, head.height
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise SchemaError(
            f"{origin}: key 'image' is a {width}x{height} PNG; each side must be 1..{MAX_IMAGE_SIDE} pixels"
        )
    bad = _png_problem(data, head)
    if bad:
        raise SchemaError(f"{origin}: key 'image' is not a readable PNG ({bad})")


def _png_problem(data: bytes, head: png.Header) -> str | None:
    """What is wrong with a PNG whose signature and size were checked; None when nothing is."""
    width, height, depth, colour, compression, filtering, interlace = head
    if int.from_bytes(data[8:12], "big") != png.IHDR_SIZE or depth not in _DEPTHS.get(colour, ()):
        return f"bad IHDR: bit depth {depth}, colour type {colour}"
    if compression or filtering or interlace > 1:
        return "bad IHDR: unknown compression, filter or interlace method"
    expected = _raw_size(width, height, depth * _CHANNELS[colour], interlace == 1)
    inflate = zlib.decompressobj()
    raw = bytearray()
    seen: list[bytes] = []
    try:
        for kind, body in png.chunks(data):
            if kind == b"IDAT":
                if seen and seen[-1] != b"IDAT" and b"IDAT" in seen:
                    return "IDAT chunks are not consecutive"
                try:
                    raw += inflate.decompress(body, expected + 1 - len(raw))
                except zlib.error as exc:
                    return f"bad image data: {exc}"
                if len(raw) > expected or inflate.unconsumed_tail:
                    return "image data is larger than its header says"
            seen.append(kind)
    except png.ChunkError as exc:
        return str(exc)
    if b"IDAT" not in seen:
        return "no IDAT chunk"
    if colour == 3 and b"PLTE" not in seen:
        return "palette image without PLTE chunk"
    if not inflate.eof or len(raw) != expected:
        return f"image data truncated: {len(raw)} of {expected} bytes"
    if interlace == 0:
        row = 1 + (width * depth * _CHANNELS[colour] + 7) // 8
        if max(raw[::row]) > 4:
            return "unknown row filter type"
    elif max(raw[k] for k in _row_starts(width, height, depth * _CHANNELS[colour])) > 4:
        return "unknown row filter type"
    return None


def _row_starts(width: int, height: int, bits: int) -> list[int]:
    out: list[int] = []
    pos = 0
    for x0, y0, dx, dy in _ADAM7:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w and h:
            row = 1 + (w * bits + 7) // 8
            out += range(pos, pos + h * row, row)
            pos += h * row
    return out


def _own_id(msg: Valid, rec: RecordLike) -> bool:
    """True when the message carried its id (so its JSON as received holds it and can be stored as is)."""
    return msg.id != derived_id(rec.topic, rec.partition, rec.offset)


class _LazyOrigin:
    """The record's Origin, built only when an error message needs it (most records have none)."""

    __slots__ = ("_rec",)

    def __init__(self, rec: RecordLike) -> None:
        self._rec = rec

    def __str__(self) -> str:
        return str(Origin(self._rec.topic, self._rec.partition, self._rec.offset))


class Validator:
    """Turn a record into a message carrying an id, or a DeadLetter naming why not.

    Never raises: whatever goes wrong with one record is that record's dead letter.
    """

    def __init__(self, *, check_png: bool = True) -> None:
        self.check_png = check_png

    def __call__(self, rec: RecordLike) -> Valid | DeadLetter:
        origin = _LazyOrigin(rec)
        try:
            msg = parse_message(rec.value, origin)  # type: ignore[arg-type]
            if isinstance(msg, UncertainImage) and self.check_png:
                _check_png(msg, origin)
        except SchemaError as exc:
            return DeadLetter(rec.topic, rec.partition, rec.offset, str(exc))
        except Exception as exc:  # a bug in validation must not stop the hub: dead-letter the record
            log.exception("%s: unexpected error while validating", origin)
            return DeadLetter(rec.topic, rec.partition, rec.offset, f"{origin}: internal error {exc!r}")
        if msg.id is None:
            msg = dataclasses.replace(msg, id=derived_id(rec.topic, rec.partition, rec.offset))
        return msg

    def items(self, records: Sequence[RecordLike]) -> list[Item | DeadLetter]:
        """Each record as its store row, or a DeadLetter naming why not; the hub's hot path.

        A record the compiled pass accepts (and that carries its own id) becomes a row straight
        from the decoded Struct; every other record goes through `self(rec)`, the checks that
        name the reason, so what is refused, and why, is exactly what `__call__` decides.
        """
        latest = datetime.now(UTC) + FUTURE_TOLERANCE  # once per batch, not per record
        out: list[Item | DeadLetter] = []
        for rec in records:
            value = rec.value
            m = (
                fast_decode(value, latest)
                if type(value) is bytes and len(value) <= MAX_MESSAGE_BYTES
                else None
            )
            if m is not None and m.id is not None:
                if type(m) is WireMetrics:
                    out.append(metrics_item(m, value.decode()))  # type: ignore[union-attr]
                    continue
                if not self.check_png:
                    out.append(image_item(m))  # type: ignore[arg-type]
                    continue
                try:
                    _check_png(m, _LazyOrigin(rec))  # type: ignore[arg-type]
                    out.append(image_item(m))  # type: ignore[arg-type]
                    continue
                except Exception:
                    pass  # `self(rec)` decides and names the reason
            msg = self(rec)
            if isinstance(msg, DeadLetter):
                out.append(msg)
                continue
            body = value.decode() if type(value) is bytes and _own_id(msg, rec) else None  # type: ignore[union-attr]
            out.append(message_item(msg, body))
        return out

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None
