"""Validation of one Kafka record: a stored-ready message with an id, or a dead letter."""

from __future__ import annotations

import binascii
import dataclasses
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from edgemnist.errors import SchemaError
from edgemnist.png import MAX_IMAGE_SIDE, check_png
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


def _png_bytes(msg: UncertainImage, origin: Origin | _LazyOrigin) -> bytes:
    try:
        return binascii.a2b_base64(msg.image, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise SchemaError(f"{origin}: key 'image' is not valid base64") from exc


def _check_png(msg: UncertainImage, origin: Origin | _LazyOrigin) -> None:
    """The image's PNG within the limits of `edgemnist.png.check_png` (header first, bounded inflate)."""
    check_png(_png_bytes(msg, origin), f"{origin}: key 'image'")


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
                    check_png(binascii.a2b_base64(m.image, strict_mode=True))  # type: ignore[union-attr]
                    out.append(image_item(m))  # type: ignore[arg-type]
                    continue
                except Exception:
                    pass  # `self(rec)` decides and names the reason (so no need to word it here)
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
