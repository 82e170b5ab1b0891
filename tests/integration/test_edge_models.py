"""A running edge follows the models topic on real Apache Kafka: it swaps, drops nothing, and keeps the model."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from edgemnist.kafka import ensure_topics
from edgemnist.model import load_model
from edgemnist.wire.messages import MetricsMessage, UncertainImage
from tests.helpers import (
    EDGE_APP,
    create_models_topic,
    metric_total,
    model_envelope,
    publish_records,
    read_topic,
    split,
    train_small_model,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _done(stderr: str) -> dict:
    lines = [line for line in stderr.splitlines() if "done: {" in line]
    assert lines, stderr[-3000:]
    return json.loads(re.sub(r"^.*?done: ", "", lines[-1]))


def _edge(kafka, events: str, models: str, model, outbox, *extra: str) -> list[str]:
    return [*EDGE_APP, "run", "--camera", "TestSwap", "--metrics-duration", "1", "--batch-size", "16",
            "--bootstrap-servers", kafka.bootstrap_servers, "--topic", events, "--model", str(model),
            "--outbox", str(outbox), "--models-topic", models, "--allow-unsigned-models", *extra]  # fmt: skip


def test_running_edge_swaps_to_a_published_model_and_keeps_it(
    kafka, kafka_settings, model_path, tmp_path, make_topic
):
    events, models = make_topic("events"), make_topic("models")
    ensure_topics(kafka_settings, {events: 1})
    create_models_topic(kafka_settings, models)
    old = load_model(model_path).version
    new_env = model_envelope(train_small_model(tmp_path / "new"), parent=old)
    outbox = tmp_path / "state" / "outbox.db"

    # A Test camera sends every frame home, so every count can be checked on the topic.
    edge = subprocess.Popen(
        _edge(kafka, events, models, model_path, outbox, "--repeat", "0", "--delay", "0.01"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def versions(ms: list) -> list[str | None]:
            return [m.model_version for m in split(ms)[1]]

        read_topic(kafka_settings, events, lambda ms: old in versions(ms), timeout=120)
        publish_records(kafka_settings, models, [new_env.to_record()])
        read_topic(kafka_settings, events, lambda ms: versions(ms).count(new_env.version) >= 2, timeout=120)
        edge.send_signal(signal.SIGTERM)
        _, err = edge.communicate(timeout=120)
    finally:
        edge.kill()
    assert edge.returncode == 0, err[-3000:]
    stats = _done(err)
    assert stats["model_versions"] == [old, new_env.version] and stats["models_refused"] == []
    assert "verified, probed and saved" in err
    n = stats["scored"]

    delivered, metrics = split(
        read_topic(
            kafka_settings,
            events,
            lambda ms: len({m.id for m in split(ms)[0]}) >= n and metric_total(split(ms)[1]) >= n,
            timeout=120,
        )
    )
    images = list({m.id: m for m in delivered}.values())  # at-least-once: a resend is one image
    # nothing dropped, nothing scored twice: every count once, windows adding up to exactly what was scored
    assert sorted(m.count for m in images) == list(range(n))
    assert metric_total(metrics) == n == sum(m.labelled or 0 for m in {m.id: m for m in metrics}.values())
    # one swap: images in count order and windows in topic order go old -> new, never back
    by_count = [m.model_version for m in sorted(images, key=lambda m: m.count)]
    switch = by_count.index(new_env.version)
    assert set(by_count[:switch]) == {old} and set(by_count[switch:]) == {new_env.version}
    window_versions = [m.model_version for m in metrics]
    first_new = window_versions.index(new_env.version)
    assert set(window_versions[:first_new]) == {old} and set(window_versions[first_new:]) == {new_env.version}
    # the windows before the swap hold exactly the images the old model scored
    assert sum(m.total for m in {m.id: m for m in metrics[:first_new]}.values()) == switch
    saved = tmp_path / "state" / "models-TestSwap" / f"{new_env.version}.skops"
    assert saved.read_bytes() == new_env.data

    # A restarted edge with the same state directory serves the accepted model at once (with
    # the models topic switched off it serves --model instead: unit test, issue 24.7).
    again = subprocess.run(
        _edge(kafka, events, models, model_path, outbox, "--repeat", "1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"serving model {new_env.version} accepted earlier" in again.stderr
    assert _done(again.stderr)["model_versions"] == [new_env.version]
    run_ids = {m.id.split("/")[1] for m in metrics}
    later = read_topic(
        kafka_settings,
        events,
        lambda ms: metric_total([m for m in split(ms)[1] if m.id.split("/")[1] not in run_ids]) >= 1000,
        timeout=120,
    )
    second = [
        m
        for m in later
        if isinstance(m, MetricsMessage | UncertainImage) and m.id.split("/")[1] not in run_ids
    ]
    assert second and {m.model_version for m in second} == {new_env.version}


def test_topic_reader_waits_for_the_topic_without_creating_it(kafka_settings, make_topic):
    from edgemnist.kafka import TopicReader

    topic = make_topic("models")
    reader = TopicReader(kafka_settings, topic)
    try:
        assert reader.open() is False
        assert reader.open() is False  # asked again: still missing, and not auto-created by asking
        create_models_topic(kafka_settings, topic)  # fails if the reader had created it
        publish_records(kafka_settings, topic, [(b"*", b"one"), (b"RotB", b"two")])
        assert reader.open() is True
        got: list = []
        deadline = time.monotonic() + 30
        while not reader.caught_up() and time.monotonic() < deadline:
            got.extend(reader.poll(0.5))
        assert [(r.key, r.value, r.offset) for r in got] == [(b"*", b"one", 0), (b"RotB", b"two", 1)]
    finally:
        reader.close()
