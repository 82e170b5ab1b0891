"""The edge app as a user runs it, against real Apache Kafka: nothing lost, counts exact."""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np
import pytest

from edge_app.outbox import Outbox
from edgemnist.data import load_frames
from edgemnist.model import load_model
from edgemnist.prep import prepare_batch
from metro_app.testing import wait_until
from tests.helpers import EDGE_APP, edge_cmd, metric_total, outbox_rows, read_full_pass, read_topic, split

pytestmark = pytest.mark.integration


def test_edge_streams_the_stream_set_once(kafka, kafka_settings, model_path, tmp_path, make_topic):
    topic = make_topic("events")
    proc = subprocess.run(
        edge_cmd(kafka.bootstrap_servers, topic, model_path, tmp_path / "o.db", "Cam"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    # What the edge should have sent, computed independently from the model and the frames.
    frames = load_frames("bundled")
    probs = load_model(model_path).predict_proba(prepare_batch(frames.frames))
    expected_uncertain = int((probs.max(axis=1) <= 0.70).sum())

    msgs = read_topic(
        kafka_settings,
        topic,
        lambda ms: len(split(ms)[0]) >= expected_uncertain and metric_total(split(ms)[1]) >= 1000,
    )
    images, metrics = split(msgs)
    assert len({m.id for m in images}) == expected_uncertain == len(images)
    assert metric_total(metrics) == 1000
    assert all(m.result_probability <= 0.70 and m.camera.startswith("Cam-") for m in images)
    assert all(m.true_class == int(frames.labels[m.count]) for m in images)
    assert {m.config.metrics_duration for m in metrics} == {2.0}
    assert outbox_rows(tmp_path / "o.db") == 0


def test_broker_down_for_20s_loses_nothing(
    restartable_kafka, kafka_settings, model_path, tmp_path, make_topic
):
    kafka = restartable_kafka
    topic = make_topic("events")
    outbox = tmp_path / "o.db"
    # A Test camera sends all 1,000 frames, 30 s of them at 0.03 s apart.
    proc = subprocess.Popen(
        edge_cmd(kafka.bootstrap_servers, topic, model_path, outbox, "TestOutage", "--delay", "0.03"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_topic(kafka_settings, topic, lambda ms: len(ms) > 0, timeout=120)  # the edge is delivering
        with kafka.stopped():
            back = time.monotonic() + 20  # the outage lasts 20 s, and until the edge has buffered
            buffered = wait_until(
                lambda: time.monotonic() >= back and outbox_rows(outbox), 120, "a backlog", every=0.2
            )
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert buffered > 100, "the edge should have kept scoring and buffering while the broker was down"
    images, metrics = read_full_pass(kafka_settings, topic)
    assert sorted({m.count for m in images}) == list(range(1000))
    assert metric_total(metrics) == 1000
    assert outbox_rows(outbox) == 0


def test_restarted_edge_resends_what_was_not_delivered(
    kafka, kafka_settings, model_path, tmp_path, make_topic
):
    topic = make_topic("events")
    outbox = tmp_path / "o.db"
    # Nothing listens on this port: the run ends with everything still in the outbox.
    dead = edge_cmd(kafka.bootstrap_servers, topic, model_path, outbox, "TestResend", "--drain-timeout", "1")
    dead[dead.index("--bootstrap-servers") + 1] = "127.0.0.1:9"
    proc = subprocess.run(dead, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3 and "stay in the outbox" in proc.stderr
    kinds = Outbox.backlog(outbox).by_kind
    assert kinds["image"] == 1000 and kinds["metrics"] >= 1
    # Run again against the real broker: the backlog goes out, then the new run's messages.
    proc = subprocess.run(
        edge_cmd(kafka.bootstrap_servers, topic, model_path, outbox, "TestResend"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    msgs = read_topic(kafka_settings, topic, lambda ms: len(split(ms)[0]) >= 2000)
    images, _ = split(msgs)
    assert len({m.id for m in images}) == 2000  # both runs, each image once by id


def test_dry_run_prints_reference_messages(model_path, tmp_path):
    env = {**os.environ, "EDGE_MNIST_CONFIDENCE": "0.9"}
    proc = subprocess.run(
        [*EDGE_APP, "run", "--dry-run", "--repeat", "1", "--camera", "Cam", "--model", str(model_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    metrics = [m for m in lines if "camera_metrics" in m]
    assert (
        sum(sum(c["certain"]) + sum(c["uncertain"]) for m in metrics for c in m["camera_metrics"].values())
        == 1000
    )
    assert metrics[-1]["config"]["confidence"] == 0.9
    assert all(m["result_probability"] <= 0.9 for m in lines if "image" in m)
    assert np.array(next(m for m in lines if "image" in m)["prepared_image"]).shape == (28, 28)
