"""The edge's Prometheus metrics: a whole run's counts over HTTP, parsed as Prometheus parses them;
swaps and refusals as they happen; --metrics-port off by default and on loopback."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_app.cli import build_parser
from edge_app.models import ServingModel
from edge_app.outbox import Outbox
from edge_app.prometheus import EdgeMetrics
from edge_app.runner import RunStats, run_edge
from edge_app.settings import EdgeSettings
from edge_app.sinks import OutboxSink
from edgemnist.errors import ConfigError
from edgemnist.model import load_model
from edgemnist.wire.messages import ModelRefusal


def scrape(port: int) -> dict[str, float]:
    """{sample name: value} of the edge's /metrics (one camera, so one sample per name)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def info_labels(port: int) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "edge_mnist_edge_model_info"]
    [sample] = family.samples
    return dict(sample.labels)


def test_a_test_camera_run_is_counted_and_served_over_http(model_path, tmp_path):
    settings = EdgeSettings(
        model=model_path, camera="TestProm", repeat=1, metrics_duration=0.5, models_topic="",
        outbox=tmp_path / "o.db",
    )  # fmt: skip
    stats = RunStats()
    with Outbox(settings.outbox_path) as outbox:
        sink = OutboxSink(outbox)
        exporter = EdgeMetrics(stats, sink)
        port = exporter.serve("127.0.0.1", 0)
        try:
            returned = run_edge(settings, sink, stats=stats)
            got = scrape(port)
            labels = info_labels(port)
            pending = outbox.pending
        finally:
            exporter.close()
    assert returned is stats
    assert got["edge_mnist_edge_images_scored_total"] == stats.scored == 1000
    assert got["edge_mnist_edge_uncertain_sent_total"] == 1000  # a Test camera sends every image
    assert got["edge_mnist_edge_metrics_windows_sent_total"] == stats.metrics_sent > 0
    assert got["edge_mnist_edge_outbox_pending"] == pending == 1000 + stats.metrics_sent  # no Kafka here
    assert got["edge_mnist_edge_outbox_dropped_total"] == 0
    assert got["edge_mnist_edge_images_labelled_total"] == 1000
    assert got["edge_mnist_edge_images_correct_total"] == stats.correct
    assert got["edge_mnist_edge_model_swaps_total"] == got["edge_mnist_edge_models_refused_total"] == 0
    assert labels == {"camera": stats.camera, "version": load_model(model_path).version}
    assert stats.camera.startswith("TestProm-")


def test_swaps_and_refusals_count_as_they_happen(model_path):
    serving = ServingModel(load_model(model_path))
    stats = RunStats(camera="CamA", serving=serving)
    metrics = EdgeMetrics(stats)
    port = metrics.serve("127.0.0.1", 0)
    try:
        stats.served("m-1")
        stats.served("m-2")
        stats.served("m-1")  # a rollback is a swap too
        serving.refuse(ModelRefusal("m-3", "signed by no trusted key"))
        serving.reported(1)  # sent home in a window: still counted
        serving.refuse(ModelRefusal("m-4", "sha256 mismatch"))
        got = scrape(port)
        labels = info_labels(port)
    finally:
        metrics.close()
    assert got["edge_mnist_edge_model_swaps_total"] == 2
    assert got["edge_mnist_edge_models_refused_total"] == 2
    assert labels == {"camera": "CamA", "version": "m-1"}
    assert "edge_mnist_edge_outbox_pending" not in got  # no outbox (--dry-run): no outbox series


def test_metrics_port_is_off_by_default_and_binds_loopback():
    assert (EdgeSettings().metrics_port, EdgeSettings().metrics_host) == (None, "127.0.0.1")
    args = build_parser().parse_args(["run", "--metrics-port", "9108"])
    assert EdgeSettings.from_args(args).metrics_port == 9108
    with pytest.raises(ConfigError, match="--metrics-port"):
        EdgeSettings(metrics_port=70000)
