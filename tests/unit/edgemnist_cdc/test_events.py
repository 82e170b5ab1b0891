"""Debezium envelopes recorded from a real Connect worker (Debezium 3.6.1, pgoutput, JSON with schemas)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from edgemnist.errors import SchemaError
from edgemnist_cdc.evaluate import StreamEvaluator
from edgemnist_cdc.events import TableView, decode_change, digit_row, digits_dataset, training_digest

RECORDED = json.loads((Path(__file__).parent / "data" / "debezium_mnist_train.json").read_text())["records"]
SNAP_FIRST, SNAP_LAST, UPDATE, DELETE, TOMBSTONE, CREATE = RECORDED


def _decode(record: dict) -> object:
    key = record["key"].encode()
    value = None if record["value"] is None else record["value"].encode()
    return decode_change(key, value, "test")


def test_snapshot_read_decodes_bytea_from_base64() -> None:
    event = _decode(SNAP_FIRST)
    assert event.op == "r" and event.snapshot and event.table == "mnist_train"
    assert event.key == (("id", 1),)
    assert event.row is not None and event.row["label"] == 3
    assert event.row["pixels"] == bytes(784)
    last = _decode(SNAP_LAST)
    assert last.row["pixels"] == bytes(range(256)) * 3 + bytes(16)


def test_update_carries_before_and_after() -> None:
    event = _decode(UPDATE)
    assert event.op == "u" and not event.snapshot
    assert event.before is not None and event.before["label"] == 3
    assert event.row is not None and event.row["label"] == 5
    assert isinstance(event.before["pixels"], bytes)


def test_delete_and_tombstone_remove_the_row() -> None:
    delete, tomb = _decode(DELETE), _decode(TOMBSTONE)
    assert delete.op == "d" and delete.row is None and delete.before["id"] == 2
    assert tomb.op == "t" and tomb.row is None and tomb.key == (("id", 2),)


def test_view_is_the_table_after_all_changes() -> None:
    view = TableView()
    view.apply_all(_decode(r) for r in RECORDED)
    assert [(r["id"], r["label"]) for r in view] == [(1, 5), (3, 7)]
    assert view.counts == {"r": 2, "c": 1, "u": 1, "d": 1, "t": 1}
    view.apply(_decode(TOMBSTONE))  # replayed: nothing to remove, nothing breaks
    assert len(view) == 2


def test_schemaless_json_and_flattened_records() -> None:
    doc = json.loads(UPDATE["value"])["payload"]
    event = decode_change(b'{"id": 1}', json.dumps(doc).encode())
    assert event.op == "u" and event.key == (("id", 1),)
    # without a schema the bytes stay base64 text; digit_row decodes them
    assert digit_row(event.row)[2].shape == (28, 28)
    flat = {"id": 9, "label": 4, "pixels": base64.b64encode(bytes(784)).decode(), "__deleted": "false"}
    event = decode_change(b'{"id": 9}', json.dumps(flat).encode())
    assert event.op == "c" and digit_row(event.row)[1] == 4
    gone = decode_change(b'{"id": 9}', json.dumps({**flat, "__deleted": "true"}).encode())
    assert gone.op == "d" and gone.row is None


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (None, b"{}", "primary key"),
        (b'{"id": 1}', b"not json", "not JSON"),
        (b'{"id": 1}', b'{"op": "x", "source": {}, "after": {}}', "op 'x'"),
        (b'{"id": 1}', b'{"op": "c", "source": {}, "after": null}', "without an 'after'"),
    ],
)
def test_bad_records_raise_schema_errors_that_say_where(key: bytes | None, value: bytes, match: str) -> None:
    with pytest.raises(SchemaError, match=match) as info:
        decode_change(key, value, "topic t, partition 0, offset 7")
    assert "offset 7" in str(info.value)


def test_digit_rows_accept_bytea_or_int_arrays_and_check_shape() -> None:
    image = np.arange(784, dtype=np.int64) % 256
    a = digit_row({"id": 1, "label": 2, "pixels": image.astype(np.uint8).tobytes()})
    b = digit_row({"id": 1, "label": 2, "pixels": image.tolist()})
    assert np.array_equal(a[2], b[2])
    with pytest.raises(SchemaError, match="784 pixels"):
        digit_row({"id": 1, "label": 2, "pixels": b"\0" * 10})
    with pytest.raises(SchemaError, match="label 0-9"):
        digit_row({"id": 1, "label": 12, "pixels": bytes(784)})


def test_digest_changes_with_a_label() -> None:
    rows = [{"id": i, "label": i % 10, "pixels": bytes([i]) * 784} for i in range(5)]
    ds, ids = digits_dataset("x", rows)
    rows[2] = {**rows[2], "label": 9}
    ds2, ids2 = digits_dataset("x", rows)
    assert training_digest(ids, ds) != training_digest(ids2, ds2)
    ds3, ids3 = digits_dataset("y", [dict(r) for r in rows])
    assert training_digest(ids2, ds2) == training_digest(ids3, ds3)


class _Constant:
    """A fake model that always says 3 with probability 0.9."""

    version = "const"

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = np.full((len(x), 10), 0.1 / 9)
        p[:, 3] = 0.9
        return p


def test_stream_evaluator_counts_rows_once_and_forgets_deleted_ones() -> None:
    from edgemnist.data import load_bundled

    data = load_bundled("stream")
    rows = [{"id": i, "label": int(data.labels[i]), "pixels": data.images[i].tobytes()} for i in range(40)]
    evaluator = StreamEvaluator(_Constant())  # type: ignore[arg-type]

    def event(op: str, row: dict) -> object:
        key = json.dumps({"id": row["id"]}).encode()
        value = {"op": op, "source": {"table": "mnist_test"}, "before": None,
                 "after": {**row, "pixels": base64.b64encode(row["pixels"]).decode()}}  # fmt: skip
        return decode_change(key, json.dumps(value).encode())

    evaluator([event("c", r) for r in rows[:20]])
    evaluator([event("c", r) for r in rows[20:]] + [event("u", rows[0])])
    s = evaluator.summary()
    threes = sum(r["label"] == 3 for r in rows)
    assert s["count"] == 40 and s["correct"] == threes and s["batches"] == 2
    assert s["log_loss"] == pytest.approx((threes * -np.log(0.9) + (40 - threes) * -np.log(0.1 / 9)) / 40)
    evaluator([decode_change(b'{"id": 0}', None)])
    assert evaluator.summary()["count"] == 39
