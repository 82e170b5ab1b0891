"""The streamsx edge topology's own stages, run in-process in order, deliver to real Apache Kafka."""

from __future__ import annotations

import pytest

from edge_app.pipeline import edge_stages
from edge_app.settings import EdgeSettings
from edge_app.stages import camera_name
from tests.helpers import metric_total, outbox_rows, read_full_pass
from tests.streams_local import run_specs

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("parallelism", [1, 2])
def test_topology_stages_send_every_image_and_every_window_to_kafka(
    kafka, kafka_settings, model_path, tmp_path, make_topic, parallelism
):
    topic = make_topic("events")
    settings = EdgeSettings(
        model=model_path, camera="TestTopo", repeat=1, metrics_duration=0.3, batch_size=64,
        parallelism=parallelism, outbox=tmp_path / "o.db", topic=topic, models_topic="", drain_timeout=60,
    )  # fmt: skip
    stages = edge_stages(settings, bootstrap_servers=kafka.bootstrap_servers)
    counts = run_specs(stages.specs())

    images, metrics = read_full_pass(kafka_settings, topic)
    camera = camera_name("TestTopo")
    assert counts["Enrich"] == counts["Score"] == 16  # 1,000 frames in batches of 64
    assert counts["UncertainFilter"] == len(images) == 1000  # a Test camera sends every image home
    assert counts["MetricsWindow"] == len(metrics) == len({m.id for m in metrics})
    assert sorted(m.count for m in images) == list(range(1000))
    assert metric_total(metrics) == 1000  # the last window too: it closes when the source ends
    assert {m.camera for m in images} == {camera}
    assert {c for m in metrics for c in m.camera_metrics} == {camera}
    assert sum(m.camera_metrics[camera].total for m in metrics) == 1000  # per-camera totals
    assert {m.config.classify_parallel for m in metrics} == {parallelism}
    assert outbox_rows(tmp_path / "o.db") == 0  # everything acknowledged before the operator exited
