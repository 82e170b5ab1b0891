"""Validation of one Kafka record: a stored-ready message with an id, or a dead letter."""

from __future__ import annotations

import dataclasses
import io
import logging
import struct
from typing import Any, Protocol

from PIL import Image, UnidentifiedImageError

from edgemnist.errors import SchemaError
from edgemnist.messages import MetricsMessage, Origin, UncertainImage, parse_message
from metro_app.store import DeadLetter

__all__ = ["MAX_IMAGE_SIDE", "RecordLike", "Validator", "derived_id", "Valid"]

log = logging.getLogger(__name__)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


def _check_png(msg: UncertainImage, origin: Origin) -> None:
    try:
        data = msg.image_bytes()
    except SchemaError as exc:
        raise SchemaError(f"{origin}: key 'image' is not valid base64") from exc
    if not data.startswith(_PNG_SIGNATURE):
        raise SchemaError(f"{origin}: key 'image' is not a PNG (bad signature)")
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise SchemaError(f"{origin}: key 'image' is not a readable PNG (no IHDR header)")
    width, height = struct.unpack(">II", data[16:24])
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise SchemaError(
            f"{origin}: key 'image' is a {width}x{height} PNG; each side must be 1..{MAX_IMAGE_SIDE} pixels"
        )
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            img.load()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as exc:
        raise SchemaError(f"{origin}: key 'image' is not a readable PNG ({exc})") from exc


class Validator:
    """Turn a record into a message carrying an id, or a DeadLetter naming why not.

    Never raises: whatever goes wrong with one record is that record's dead letter.
    """

    def __init__(self, *, check_png: bool = True) -> None:
        self.check_png = check_png

    def __call__(self, rec: RecordLike) -> Valid | DeadLetter:
        origin = Origin(rec.topic, rec.partition, rec.offset)
        try:
            msg = parse_message(rec.value, origin)
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

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False
