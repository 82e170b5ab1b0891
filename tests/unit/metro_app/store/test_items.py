"""The hub's hot path (rows straight from the decoded Structs) stores exactly what the message path stores."""

import base64
import json
import logging
import threading
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemnist import png
from edgemnist.testing.fakes import Record
from edgemnist.wire import messages
from metro_app.ingest.runloop import run_forever
from metro_app.ingest.validate import Validator, derived_id
from metro_app.samples import make_image, make_metrics
from metro_app.store import DeadLetter
from metro_app.store.items import message_item
from tests.poison import poison_image, poison_metrics
from tests.wirecases import FLIPS, PNGS, PREPARED, make_png


def by_message_path(rec):
    """What `Validator.__call__` decides, as a row: the dataclasses, then the row built from them."""
    out = Validator()(rec)
    if isinstance(out, DeadLetter):
        return out
    own = out.id != derived_id(rec.topic, rec.partition, rec.offset)
    return message_item(out, rec.value.decode() if own else None)


def test_rows_from_structs_equal_rows_from_messages_column_for_column():
    values = [
        make_metrics("CamA", 1).to_json(),
        make_metrics("CamA", 2, correct=7).to_json(),
        make_metrics("CamA", 3, with_id=False).to_json(),
        make_image("CamA", 1).to_json(),
        make_image("CamA", 2, with_id=False).to_json(),
        json.dumps({**make_metrics("CamB", 4).to_dict(), "held_back": 3}).encode(),
        json.dumps({**make_metrics("CamB", 5).to_dict(), "camera_metrics": {
            "B1": {"certain": [1] * 11, "uncertain": [2] * 11}, "B2": {"certain": [0] * 11, "uncertain": [3] * 11}}}).encode(),
        b"not json",
        json.dumps({**make_image("CamA", 3).to_dict(), "image": "aGVsbG8="}).encode(),  # base64, not a PNG
    ]  # fmt: skip
    recs = [Record("events", 0, k, b"k", v) for k, v in enumerate(values)]
    got = Validator().items(recs)
    assert got == [by_message_path(r) for r in recs]
    assert [type(g).__name__ for g in got] == ["Item"] * 7 + ["DeadLetter"] * 2
    assert got[6].cameras == (("B1", 11, 22), ("B2", 0, 33)) and got[6].row[5] == 66  # images column
    assert got[2].id == "events:0:2" and json.loads(got[2].row[6])["id"] == "events:0:2"  # body holds the id


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 1).flatmap(lambda k: (poison_image if k else poison_metrics)(7)))
def test_the_hot_path_decides_every_record_as_the_checks_do(message):
    rec = Record("events", 0, 7, None, json.dumps(message).encode())
    [got] = Validator().items([rec])
    assert got == by_message_path(rec)


def test_run_forever_survives_a_failing_step_and_stops_when_told(caplog):
    stop, calls = threading.Event(), []

    def step():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broker went away")
        if len(calls) == 3:
            stop.set()

    with caplog.at_level(logging.ERROR):
        run_forever(step, stop, 0.01, "test loop: a batch", logging.getLogger("t"))
    assert len(calls) == 3
    assert "test loop: a batch failed" in caplog.text and "broker went away" in caplog.text


def by_checks_alone(rec):
    """What the key-by-key checks and the PNG chunk walker decide, with neither compiled pass."""
    with (
        mock.patch.object(messages, "fast_parse", lambda *a: None),
        mock.patch.object(png, "_simple_size", lambda d: None),
    ):
        return by_message_path(rec)


def _image_with(prepared: str | None = None, png_bytes: bytes | None = None) -> bytes:
    d = make_image("CamP", 4).to_dict()
    if png_bytes is not None:
        d["image"] = base64.b64encode(png_bytes).decode()
    d["prepared_image"] = "@P@"
    text = json.dumps(d, separators=(",", ":"))
    return text.replace(
        '"@P@"', prepared or json.dumps(make_image("CamP", 4).to_dict()["prepared_image"])
    ).encode()


@pytest.mark.parametrize(
    "name", sorted(PNGS) + [f"flip {f}" for f in sorted(FLIPS)] + [f"prepared {p}" for p in sorted(PREPARED)]
)
def test_each_image_becomes_the_row_or_the_dead_letter_the_checks_alone_make(name):
    kind, _, which = name.partition(" ")
    if kind == "flip":
        value = _image_with(png_bytes=FLIPS[which](make_png()))
    elif kind == "prepared":
        value = _image_with(prepared=PREPARED[which])
    else:
        value = _image_with(png_bytes=PNGS[name])
    rec = Record("events", 0, 3, b"k", value)
    [got] = Validator().items([rec])
    assert got == by_checks_alone(rec)
    if isinstance(got, DeadLetter):
        assert got.reason.startswith("message at events[0]@3: "), (
            got.reason
        )  # names the record and the reason


def _image_json(**change) -> bytes:
    return json.dumps({**make_image("CamT", 5).to_dict(), **change}).encode()


_KIND_CASES = {
    "image": make_image("CamK", 1).to_json(),
    "metrics": make_metrics("CamK", 2).to_json(),
    "image from a camera named camera_metrics": _image_json(camera="camera_metrics"),
    "image id naming camera_metrics": _image_json(id='x"camera_metrics"y'),
    "image with a camera_metrics key": _image_json(camera_metrics={"C": {"certain": [0] * 11, "uncertain": [0] * 11}}),
    "metrics with an image key": json.dumps({**make_metrics("CamK", 3).to_dict(), "image": "aGVsbG8="}).encode(),
    "escaped camera_metrics key": make_metrics("CamK", 4).to_json().replace(b'"camera_metrics"', b'"camera\\u005fmetrics"'),
    "escaped image key": make_image("CamK", 5).to_json().replace(b'"image"', b'"\\u0069mage"'),
    "metrics, camera_metrics not the first key": json.dumps(
        {"timestamp": make_metrics("CamK", 6).timestamp, **make_metrics("CamK", 6).to_dict()}).encode(),
    "metrics with spaces before its first key": b' { ' + make_metrics("CamK", 7).to_json()[1:],
    "image with a camera_metrics key first": json.dumps(
        {"camera_metrics": {"C": {"certain": [0] * 11, "uncertain": [0] * 11}}, **make_image("CamK", 8).to_dict()}).encode(),
    "neither kind": b'{"count": 1}',
    "a JSON list": b"[1, 2]",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(_KIND_CASES))
def test_the_kind_of_message_is_decided_as_the_checks_alone_decide_it(name):
    """The compiled pass picks its decoder by the first bytes or tries the image decoder first (an
    image cannot hold a camera_metrics key): every record still becomes the row, or the dead
    letter, the key-by-key checks make."""
    rec = Record("events", 0, 9, b"k", _KIND_CASES[name])
    [got] = Validator().items([rec])
    assert got == by_checks_alone(rec)
    valid = {"image", "metrics", "image from a camera named camera_metrics", "image id naming camera_metrics",
             "escaped camera_metrics key", "escaped image key", "metrics with an image key",
             "metrics, camera_metrics not the first key", "metrics with spaces before its first key"}  # fmt: skip
    assert isinstance(got, DeadLetter) is (name not in valid), got


@pytest.mark.parametrize(
    "stamp",
    ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.123456Z", "2026-01-02T03:04:05+02:00", "2026-01-02T03:04:05.5-07:30",
     "2026-01-02T03:04:05+00:00", "2026-01-02 03:04:05Z", "2026-01-02T03:04:05.999999999Z", "20260102T030405Z"],
)  # fmt: skip
def test_the_ts_column_is_the_timestamp_read_once_by_the_check(stamp):
    """The image row's `ts` comes from the datetime the timestamp check parsed; it equals what
    `store.rows.epoch` reads from the text, in every form the checks accept."""
    rec = Record("events", 0, 4, b"k", _image_json(timestamp=stamp))
    [got] = Validator().items([rec])
    assert got == by_checks_alone(rec)
    if not isinstance(got, DeadLetter):
        from metro_app.store.rows import epoch

        assert got.row[3] == epoch(stamp) and got.row[2] == stamp
