"""Three edge processes and the hub, as a user runs them; then two hubs sharing a PostgreSQL store."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from edgemnist.kafka import ensure_topics
from metro_app.store import Store
from metro_app.testing import HubProcess, wait_until
from tests.helpers import edge_cmd

pytestmark = pytest.mark.integration


def cameras_covering(partitions: int) -> list[str]:
    """A Test camera and two more whose Kafka keys (`<camera>-<hostname>`) land on every partition."""
    from kafka.partitioner.default import murmur2

    host = socket.gethostname()

    def part(cam: str) -> int:
        return (murmur2(f"{cam}-{host}".encode()) & 0x7FFFFFFF) % partitions

    chosen: dict[int, str] = {}
    for cam in ["TestCamA"] + [f"Cam{c}" for c in "BCDEFGHIJKLMNOPQRSTUVWXYZ"]:
        if cam.startswith("Test") or part(cam) not in chosen:
            chosen.setdefault(part(cam), cam)
        if len(chosen) == min(partitions, 3):
            break
    return list(chosen.values())


def run_edges(kafka, topic: str, model: Path, tmp: Path, cameras: list[str]) -> dict[str, dict]:
    """Run one `edge-app run --repeat 1` per camera, concurrently; returns each one's closing stats."""
    procs = {}
    for cam in cameras:
        cmd = edge_cmd(kafka.bootstrap_servers, topic, model, tmp / f"{cam}.db", cam)
        procs[cam] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stats = {}
    for cam, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"edge {cam} failed: {err[-2000:]}"
        done = [line for line in err.splitlines() if "done: {" in line]
        assert done, f"edge {cam} printed no summary: {err[-1000:]}"
        stats[cam] = json.loads(re.sub(r"^.*?done: ", "", done[-1]))
    return stats


def per_camera_counts(metrics: list[dict]) -> Counter:
    per: Counter = Counter()
    for it in metrics:
        for cam, c in it["tuple"]["camera_metrics"].items():
            per[cam] += sum(c["certain"]) + sum(c["uncertain"])
    return per


def check_views(hub: HubProcess, stats: dict[str, dict]) -> None:
    """What a dashboard sees equals what the edges sent, exactly once."""
    images = hub.client.fetch_all("UncertainPredictions")
    ids = [it["tuple"]["id"] for it in images]
    assert len(ids) == len(set(ids)) == sum(s["uncertain_sent"] for s in stats.values())
    per = per_camera_counts(hub.client.fetch_all("ClassificationMetrics"))
    assert dict(per) == {s["camera"]: s["scored"] for s in stats.values()}
    windows = hub.client.fetch_all("WindowUncertain")
    assert windows and all(isinstance(w["tuple"], list) and 1 <= len(w["tuple"]) <= 25 for w in windows)
    names = {c["name"] for c in hub.client.cameras()}
    assert names == {s["camera"] for s in stats.values()}


def stored_everything(hubs: list[HubProcess], stats: dict[str, dict]) -> bool:
    h = hubs[0].health()["stored"]
    want_images = sum(s["uncertain_sent"] for s in stats.values())
    want_metrics = sum(s["metrics_sent"] for s in stats.values())
    return h["images"] == want_images and h["metrics"] == want_metrics


def test_three_edges_and_a_hub(kafka, kafka_settings, model_path, tmp_path, make_topic, hub_kafka_client):
    topic = make_topic("events")
    ensure_topics(kafka_settings, {topic: 1})
    cams = ["TestCamA", "CamB", "CamC"]
    with HubProcess(
        kafka.bootstrap_servers,
        topic,
        f"sqlite:///{tmp_path}/hub.db",
        tmp_path / "hub.log",
        extra=["--kafka-client", hub_kafka_client],
    ) as hub:
        stats = run_edges(kafka, topic, model_path, tmp_path, cams)
        test_cam = next(s for s in stats.values() if s["camera"].startswith("TestCamA"))
        assert test_cam["uncertain_sent"] == test_cam["scored"]  # a Test camera sends every image
        wait_until(lambda: stored_everything([hub], stats), 180, "every edge message stored")
        check_views(hub, stats)
        assert hub.health()["dlq"] == 0


def test_two_hubs_share_a_postgresql_store(
    kafka, kafka_settings, model_path, tmp_path, postgres, make_topic, hub_kafka_client
):
    topic = make_topic("events")
    ensure_topics(kafka_settings, {topic: 3})
    url = postgres.fresh_database(f"scale{time.time_ns()}")
    hubs = [
        HubProcess(
            kafka.bootstrap_servers,
            topic,
            url,
            tmp_path / f"hub{k}.log",
            extra=["--kafka-client", hub_kafka_client],
        ).start()
        for k in range(2)
    ]
    try:
        cams = cameras_covering(3)
        stats = run_edges(kafka, topic, model_path, tmp_path, cams)
        wait_until(lambda: stored_everything(hubs, stats), 240, "every edge message stored")
        for hub in hubs:
            check_views(hub, stats)
        took_part = [hub.health()["consumer"]["records"] for hub in hubs]
        assert all(n > 0 for n in took_part), f"records consumed per hub: {took_part}"
    finally:
        for hub in hubs:
            hub.stop()
    store = Store(url)
    counts = store.counts()
    assert counts["images"] == sum(s["uncertain_sent"] for s in stats.values())
    assert counts["metrics"] == sum(s["metrics_sent"] for s in stats.values())
    store.close()
