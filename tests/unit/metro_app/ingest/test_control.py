"""Control topic with fakes: every bad shape is a dead letter with a reason; training events become labels."""

import base64
import hashlib
import json

import pytest

from edgemnist.testing.fakes import FakeConsumer, FakeProducer, Record
from edgemnist.testing.hostile import bomb_png
from metro_app.ingest.control import Command, ControlLoop, TrainingEvent, control_group_id, parse_control
from metro_app.ingest.loop import DeadLetterSink
from metro_app.samples import png_frame
from metro_app.store import DeadLetter

PNG = base64.b64encode(png_frame(7)).decode()


def rec(value, offset=0):
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return Record("edge-mnist.control", 0, offset, None, raw)


def training(**changes):
    payload = {"image": PNG, "label": 7, "labeller": "line-7", "source": "scanner", **changes}
    return {"type": "training", "payload": {k: v for k, v in payload.items() if v is not ...}}


def test_a_retrain_command_parses():
    assert parse_control(rec({"type": "command", "payload": "retrain"})) == Command("retrain")


def test_a_training_event_parses_with_an_id_from_its_content_when_absent():
    event = parse_control(rec(training()))
    assert isinstance(event, TrainingEvent)
    assert event.id == "train-" + hashlib.sha256(png_frame(7)).hexdigest()[:32]
    assert (event.label, event.labeller, event.source, event.image) == (7, "line-7", "scanner", PNG)
    assert parse_control(rec(training(id="scan-42"))).id == "scan-42"


BAD = [
    (None, "tombstone"),
    (b"{not json", "not UTF-8 JSON"),
    (b"\xff\xfe", "not UTF-8 JSON"),
    ([1, 2], "must be a JSON object, got list"),
    ({"payload": "retrain"}, "key 'type' must be 'command' or 'training', got None"),
    ({"type": "reboot", "payload": "now"}, "got 'reboot'"),
    ({"type": "command", "payload": "explode"}, "unknown command 'explode'"),
    ({"type": "command"}, "unknown command None"),
    ({"type": "training", "payload": "x"}, "payload must be a JSON object"),
    (training(label=10), "'label' must be a digit 0 to 9, got 10"),
    (training(label="7"), "'label' must be a digit 0 to 9, got '7'"),
    (training(label=True), "'label' must be a digit"),
    (training(label=...), "got None"),
    (training(image=...), "'image' must be a base64 PNG string"),
    (training(image="***"), "'image' is not valid base64"),
    (training(image=base64.b64encode(b"GIF89a....").decode()), "'image' is not a PNG"),
    (training(image=base64.b64encode(png_frame(7)[:40]).decode()), "not a readable PNG"),
    (training(labeller=...), "'labeller' must be a string"),
    (training(labeller=""), "'labeller' must be a string"),
    (training(source=5), "'source' must be a string"),
    (training(id=""), "'id' must be a string"),
    (training(id="x" * 301), "'id' must be a string"),
]


@pytest.mark.parametrize("value, words", BAD)
def test_every_bad_shape_is_a_dead_letter_naming_why(value, words):
    out = parse_control(rec(value, offset=9))
    assert isinstance(out, DeadLetter)
    assert (out.topic, out.partition, out.offset) == ("edge-mnist.control", 0, 9)
    assert words in out.reason and "edge-mnist.control[0]@9" in out.reason


def test_the_loop_stores_training_dead_letters_bad_ones_commits_then_runs_commands(store):
    values = [
        training(id="a"),
        training(id="a"),  # re-sent: stored once
        training(id="b", label=3),
        {"type": "command", "payload": "retrain"},
        {"type": "command", "payload": "explode"},
        b"nope",
    ]
    consumer = FakeConsumer([{("control", 0): [rec(v, offset=i) for i, v in enumerate(values)]}])
    producer = FakeProducer()
    commands = []

    def on_command(name):
        commands.append((name, consumer.commits))

    loop = ControlLoop(consumer, store, DeadLetterSink(producer, "dlq"), on_command, retry_seconds=0)
    assert loop.step() == 6
    assert commands == [("retrain", 1)]  # after the commit
    assert sorted((lab["image_id"], lab["label"]) for lab in store.labels()) == [("a", "7"), ("b", "3")]
    assert [(p.topic, p.headers["source_offset"]) for p in producer.sent] == [
        ("dlq", b"4"),
        ("dlq", b"5"),
    ]
    assert b"unknown command 'explode'" in producer.sent[0].headers["reason"]
    assert [d.offset for d in store.dead_letters()] == [4, 5]
    assert loop.stats == {"records": 6, "commands": 1, "training_stored": 2, "dead_letters": 2}
    assert control_group_id("edge-mnist.control") == "MetroEdge-control-edge-mnist.control"


def test_one_bomb_png_is_dead_lettered_and_its_neighbours_are_kept(store):
    """Issue 24.2: a 20000x20000 1-bit PNG (about 48 KB) must not take the good events around it down."""
    bomb = base64.b64encode(bomb_png(20000)).decode()
    big = base64.b64encode(bomb_png(1100, bits=8)).decode()
    values = [
        training(id="before"),
        training(id="bomb", image=bomb),
        training(id="after", label=3),
        {"type": "command", "payload": "retrain"},
        training(id="big", image=big),  # larger than the side limit of event images
    ]
    consumer = FakeConsumer([{("control", 0): [rec(v, offset=i) for i, v in enumerate(values)]}])
    producer = FakeProducer()
    commands = []
    loop = ControlLoop(consumer, store, DeadLetterSink(producer, "dlq"), commands.append, retry_seconds=0)
    assert loop.step() == 5
    assert sorted(lab["image_id"] for lab in store.labels()) == ["after", "before"]
    assert commands == ["retrain"]
    reasons = {d.offset: d.reason for d in store.dead_letters()}
    assert sorted(reasons) == [1, 4]
    assert "20000x20000" in reasons[1] and "1100x1100" in reasons[4]
    assert [p.headers["source_offset"] for p in producer.sent] == [b"1", b"4"]


def test_a_record_the_parser_chokes_on_is_dead_lettered_with_the_error(store, monkeypatch):
    import metro_app.ingest.control as control

    def boom(payload, where):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(control, "_training", boom)
    out = parse_control(rec(training(), offset=3))
    assert isinstance(out, DeadLetter)
    assert "RecursionError" in out.reason and "edge-mnist.control[0]@3" in out.reason
