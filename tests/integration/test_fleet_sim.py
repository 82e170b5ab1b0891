"""The fleet simulator at small size on real Apache Kafka and a real PostgreSQL (issue 23)."""

from __future__ import annotations

import json
import os

import pytest

from edge_app.fleetsim import FleetPlan
from edgemnist_demo.fleet import FleetOptions, Services, run_fleet
from edgemnist_demo.fleetcli import server_databases
from edgemnist_demo.fleetreport import table

pytestmark = pytest.mark.integration


def test_fifty_cameras_against_one_hub_store_every_message_once(kafka, postgres, tmp_path):
    plan = FleetPlan(cameras=50, window=2, fps=30, uncertain_share=0.02, drift_share=0.1, seed=3)
    opts = FleetOptions(plan=plan, hubs=(1,), partitions=4, duration=10, workers=1, drain=60, sample_every=1)
    workdir = getattr(kafka, "workdir", None)
    # a PostgreSQL server the user runs (--postgres-url): each run gets a fresh database on it
    fresh = server_databases(f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres")
    services = Services(kafka.bootstrap_servers, fresh, tmp_path, str(workdir) if workdir else None,
                        str(postgres.data))  # fmt: skip
    result = json.loads(json.dumps(run_fleet(opts, services, say=lambda _: None)))
    [run] = result["runs"]
    sent, stored = run["sent"], run["stored"]
    assert sent["metrics"] >= 50 * 4 and sent["images"] > 50 and sent["unsent"] == 0
    assert (stored["metrics"], stored["images"]) == (sent["metrics"], sent["images"]) and run[
        "rows_equal_sent"
    ]
    assert stored["distinct_metrics"] == stored["metrics"] and stored["distinct_images"] == stored["images"]
    assert run["lag"]["drained"] and run["cameras_listed"] == 50
    # the views were asked of a hub that ingests nothing (--no-ingest): it reads what the other stored
    assert result["views_from"] == "an API hub (--no-ingest)" and run["views_hub"]["ingest"] is False
    # the ingesting hub yields the CPU to the one the dashboards ask (--ingest-nice, default 10)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert run["nice"] == {"hubs": [min(19, base + 10)], "views_hub": base}
    assert (run["views_hub"]["stored"]["metrics"], run["views_hub"]["stored"]["images"]) == (
        sent["metrics"], sent["images"])  # fmt: skip
    assert run["offered_msgs_per_s"] > 0 and run["stored_msgs_per_s"] > 0
    assert (
        run["edge_to_store_s"]["p50"] > 0 and run["edge_to_store_s"]["p99"] >= run["edge_to_store_s"]["p50"]
    )
    assert (
        run["views"]["cameras"]["n"] > 0 and run["views"]["camera"]["n"] > 0 and run["views"]["errors"] == 0
    )
    assert run["hub_rss_mb"][0] > 0 and run["store_mb_per_hour"] > 0
    assert {"hub0", "api", "postgres", "generator"} <= run["cpu_pct_of_one_core"].keys()
    assert run["saturated_first"] in {"none", "generator", "hub CPU", "PostgreSQL", "broker"}
    assert result["cameras"] == 50 and result["target_msgs_per_s"] > 0
    assert "rows=sent" in table(result) and "views asked of an API hub" in table(result)
