"""Debezium change events, decoded: what a table looks like to a consumer of its change topic.

Debezium's connectors write one record per row change. With Kafka Connect's
JsonConverter and schemas (its default) the value is ``{"schema": ..., "payload":
{"before", "after", "source", "op", ...}}``; without schemas it is the payload
alone; after a delete comes a tombstone (the key, no value) so that compaction
can drop the row. ``op`` is ``r`` (a snapshot read), ``c``, ``u`` or ``d``.
Binary columns (PostgreSQL ``bytea``) arrive base64-encoded in JSON.

:class:`TableView` applies those events, in topic order, to a dictionary keyed
by the row's primary key, so a trainer sees the table as it is now: updated
rows replaced, deleted rows gone, whatever mix of snapshot and streaming
produced them. :func:`digit_row` turns one ``mnist_*`` row into a label and a
28x28 image. Nothing here talks to Kafka.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgemnist.data import Dataset
from edgemnist.errors import SchemaError
from edgemnist.prep import PIXELS, SHAPE

__all__ = [
    "OPS",
    "ChangeEvent",
    "TableView",
    "decode_change",
    "digit_row",
    "digits_dataset",
    "training_digest",
]

OPS = {"r": "read", "c": "create", "u": "update", "d": "delete"}


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One row change. ``row`` is the row after the change (None for a delete or a tombstone).

    Attributes:
        op: ``r``, ``c``, ``u``, ``d``, or ``t`` for a tombstone.
        key: the primary key columns, e.g. ``{"id": 7}``.
        snapshot: True for rows read by the connector's initial snapshot.
    """

    op: str
    key: tuple[tuple[str, Any], ...]
    row: dict[str, Any] | None
    before: dict[str, Any] | None = None
    table: str | None = None
    snapshot: bool = False
    ts_ms: int | None = None


def _where(where: str) -> str:
    return f" ({where})" if where else ""


def _json(raw: bytes | str, what: str, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise SchemaError(f"Debezium {what} is not JSON{_where(where)}: {exc}") from exc


def _unwrap(doc: Any) -> tuple[Any, Any]:
    """(payload, schema) of a JsonConverter document, with or without schemas."""
    if isinstance(doc, dict) and set(doc) == {"schema", "payload"}:
        return doc["payload"], doc["schema"]
    return doc, None


def _bytes_fields(schema: Any, name: str) -> frozenset[str]:
    """Names of the ``bytes`` columns of the ``before``/``after`` struct in a value schema."""
    if not isinstance(schema, dict):
        return frozenset()
    for part in schema.get("fields", ()):
        if isinstance(part, dict) and part.get("field") == name:
            return frozenset(
                f["field"] for f in part.get("fields", ()) if isinstance(f, dict) and f.get("type") == "bytes"
            )
    return frozenset()


def _row(raw: Any, binary: frozenset[str], where: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SchemaError(f"Debezium row is not an object{_where(where)}: {str(raw)[:80]}")
    row = dict(raw)
    for name in binary:
        if isinstance(row.get(name), str):
            try:
                row[name] = base64.b64decode(row[name], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise SchemaError(f"column {name!r} is not base64{_where(where)}") from exc
    return row


def _key(raw: bytes | str | None, where: str) -> tuple[tuple[str, Any], ...]:
    if raw is None:
        raise SchemaError(f"Debezium record without a key{_where(where)}: the table needs a primary key")
    payload, _ = _unwrap(_json(raw, "key", where))
    if not isinstance(payload, dict) or not payload:
        raise SchemaError(f"Debezium key is not an object of key columns{_where(where)}")
    return tuple(sorted(payload.items()))


def decode_change(key: bytes | str | None, value: bytes | str | None, where: str = "") -> ChangeEvent:
    """One Debezium record (key and value as they are on the topic) -> a :class:`ChangeEvent`.

    Also reads the flattened form that Debezium's ``ExtractNewRecordState`` transform
    writes (the row itself, with ``__deleted`` / ``__op`` when configured), since
    teams that already run Debezium often use it.

    Raises:
        SchemaError: the record is not a Debezium change event; the message says ``where``.
    """
    keys = _key(key, where)
    if value is None:
        return ChangeEvent("t", keys, None)
    payload, schema = _unwrap(_json(value, "value", where))
    if payload is None:
        return ChangeEvent("t", keys, None)
    if not isinstance(payload, dict):
        raise SchemaError(f"Debezium value is not an object{_where(where)}")
    if "op" not in payload or "source" not in payload:
        return _flattened(payload, schema, keys, where)
    op = payload["op"]
    if op not in OPS:
        raise SchemaError(f"Debezium op {op!r} is not one of {', '.join(OPS)}{_where(where)}")
    source = payload.get("source") or {}
    after = _row(payload.get("after"), _bytes_fields(schema, "after"), where)
    before = _row(payload.get("before"), _bytes_fields(schema, "before"), where)
    if op != "d" and after is None:
        raise SchemaError(f"Debezium {OPS[op]} without an 'after' row{_where(where)}")
    snapshot = op == "r" or str(source.get("snapshot", "false")) not in ("false", "")
    return ChangeEvent(
        op, keys, after if op != "d" else None, before, source.get("table"), snapshot, payload.get("ts_ms")
    )


def _flattened(
    payload: dict[str, Any], schema: Any, keys: tuple[tuple[str, Any], ...], where: str
) -> ChangeEvent:
    binary = frozenset(
        f["field"]
        for f in (schema or {}).get("fields", ())
        if isinstance(f, dict) and f.get("type") == "bytes"
    )
    row = _row(payload, binary, where)
    assert row is not None
    deleted = str(row.pop("__deleted", "false")).lower() == "true"
    op = str(row.pop("__op", "d" if deleted else "c"))
    table = row.pop("__table", None)
    return ChangeEvent("d" if deleted else op, keys, None if deleted else row, None, table, op == "r")


@dataclass(slots=True)
class TableView:
    """A table as its change stream says it is now: primary key -> latest row.

    Attributes:
        counts: events applied, by op (``r``, ``c``, ``u``, ``d``, ``t``).
    """

    rows: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys("rcudt", 0))

    def apply(self, event: ChangeEvent) -> None:
        """Insert, replace or remove the event's row; a tombstone removes too (it is idempotent)."""
        self.counts[event.op] = self.counts.get(event.op, 0) + 1
        if event.row is None:
            self.rows.pop(event.key, None)
        else:
            self.rows[event.key] = event.row

    def apply_all(self, events: Iterable[ChangeEvent]) -> None:
        for event in events:
            self.apply(event)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Rows in primary-key order, so two readers of the same stream build the same set."""
        return iter(self.rows[k] for k in sorted(self.rows))


def digit_row(row: Mapping[str, Any], where: str = "") -> tuple[int, int, np.ndarray]:
    """(id, label, 28x28 uint8 image) of a ``mnist_train`` / ``mnist_test`` row.

    ``pixels`` is 784 bytes (bytea) or 784 integers (an int array column), row-major.
    """
    try:
        row_id, label, pixels = int(row["id"]), int(row["label"]), row["pixels"]
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"digit row needs id, label and pixels{_where(where)}: {exc}") from exc
    if isinstance(pixels, str):
        try:
            pixels = base64.b64decode(pixels, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SchemaError(f"row {row_id}: pixels are not base64{_where(where)}") from exc
    image = (
        np.frombuffer(pixels, dtype=np.uint8)
        if isinstance(pixels, bytes | bytearray | memoryview)
        else np.asarray(pixels, dtype=np.int64).clip(0, 255).astype(np.uint8)
    )
    if image.size != PIXELS or not 0 <= label <= 9:
        raise SchemaError(
            f"row {row_id}: expected {PIXELS} pixels and a label 0-9, got {image.size} and {label}{_where(where)}"
        )
    return row_id, label, image.reshape(SHAPE)


def digits_dataset(name: str, rows: Iterable[Mapping[str, Any]]) -> tuple[Dataset, np.ndarray]:
    """A labelled :class:`Dataset` of digit rows, in the order given, and their ids."""
    decoded = [digit_row(r) for r in rows]
    ids = np.asarray([d[0] for d in decoded], dtype=np.int64)
    images = np.stack([d[2] for d in decoded]) if decoded else np.zeros((0, *SHAPE), np.uint8)
    labels = np.asarray([d[1] for d in decoded], dtype=np.int64)
    return Dataset(name, images, labels), ids


def training_digest(ids: np.ndarray, dataset: Dataset) -> str:
    """sha256 of (id, label, pixels) in the order given: equal digests, equal training sets."""
    assert dataset.labels is not None
    h = hashlib.sha256()
    for row_id, label, image in zip(ids, dataset.labels, dataset.images, strict=True):
        h.update(int(row_id).to_bytes(8, "little", signed=True) + bytes([int(label)]) + image.tobytes())
    return h.hexdigest()
