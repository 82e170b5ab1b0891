"""A three-broker cluster loses the leader of the events partitions mid-run, and gets it back.

Two edges (each camera's key on its own partition) and two hubs sharing one PostgreSQL store
run against three Apache Kafka KRaft brokers (replication 3, min.insync.replicas 2). The broker
leading both events partitions (and, being a voter, part of the controller quorum) is SIGKILLed
while the edges send, and restarted later. Every message an edge produced is stored exactly once,
both hubs keep consuming through the failover, and the edges' outboxes end empty.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time

import pytest

from metro_app.store import Store
from metro_app.testing import HubProcess, wait_until
from tests.helpers import edge_cmd, outbox_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LEADER = 2  # the node that leads every events partition until it is killed


def cameras_on_partitions(partitions: int) -> list[str]:
    """A Test camera (sends every image) and a camera whose keys land on the other partition(s)."""
    from kafka.partitioner.default import murmur2

    host = socket.gethostname()

    def part(cam: str) -> int:
        return (murmur2(f"{cam}-{host}".encode()) & 0x7FFFFFFF) % partitions

    chosen = {part("TestCamA"): "TestCamA"}
    for cam in (f"TestCam{c}" for c in "BCDEFGHIJKLMNOPQRSTUVWXYZ"):
        chosen.setdefault(part(cam), cam)
        if len(chosen) == partitions:
            return list(chosen.values())
    raise AssertionError("no camera names cover every partition")


def consumed(hubs: list[HubProcess]) -> list[int]:
    return [hub.health()["consumer"]["records"] for hub in hubs]


def test_leader_killed_mid_run_every_message_stored_once(
    kafka_cluster, model_path, tmp_path, postgres, make_topic, hub_kafka_client
):
    topic = make_topic("events")
    kafka_cluster.create_topic(topic, partitions=2, leader=LEADER)
    url = postgres.fresh_database(f"cluster{time.time_ns()}")
    servers = kafka_cluster.bootstrap_servers
    client = ["--kafka-client", hub_kafka_client]
    hubs = [HubProcess(servers, topic, url, tmp_path / f"hub{k}.log", extra=client).start() for k in range(2)]
    cams = cameras_on_partitions(2)
    edges = {}
    try:
        for cam in cams:  # Test cameras send all 1,000 images, 0.04 s apart: about 40 s each
            cmd = edge_cmd(servers, topic, model_path, tmp_path / f"{cam}.db", cam, "--delay", "0.04")
            edges[cam] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: min(consumed(hubs)) >= 100, 120, "both hubs consuming before the kill")

        kafka_cluster.kill(LEADER)
        at_kill = consumed(hubs)
        assert all(proc.poll() is None for proc in edges.values()), "the edges must still be sending"
        wait_until(lambda: LEADER not in kafka_cluster.leaders(topic).values(), 60, "a new leader elected")
        wait_until(
            lambda: all(now >= then + 100 for now, then in zip(consumed(hubs), at_kill, strict=True)),
            120,
            f"both hubs consuming 100 more records each without broker {LEADER} (at the kill: {at_kill})",
        )
        kafka_cluster.restart(LEADER)
        wait_until(lambda: all(len(isr) == 3 for isr in kafka_cluster.in_sync(topic).values()), 120,
                   f"broker {LEADER} back in sync on every partition")  # fmt: skip

        stats = {}
        for cam, proc in edges.items():
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"edge {cam} failed: {err[-3000:]}"
            stats[cam] = json.loads(
                re.sub(r"^.*?done: ", "", next(ln for ln in err.splitlines() if "done: {" in ln))
            )
        images = sum(s["uncertain_sent"] for s in stats.values())
        metrics = sum(s["metrics_sent"] for s in stats.values())
        assert images == 2000  # two Test cameras, 1,000 images each

        def stored_all() -> dict | None:
            counts = hubs[0].health()["stored"]
            return counts if (counts["images"], counts["metrics"]) == (images, metrics) else None

        wait_until(stored_all, 180, f"{images} images and {metrics} metrics windows stored")
        assert all(hub.alive() for hub in hubs)
        assert all(n > then for n, then in zip(consumed(hubs), at_kill, strict=True))
        for cam in cams:
            assert outbox_rows(tmp_path / f"{cam}.db") == 0, f"{cam}'s outbox must end empty"
    finally:
        for proc in edges.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for hub in hubs:
            hub.stop()
        for node in kafka_cluster.nodes.values():  # leave the session's cluster whole
            if not node.running:
                node.start()

    store = Store(url)
    try:
        counts = store.counts()
        assert (counts["images"], counts["metrics"]) == (images, metrics)  # each exactly once
        ids = [row["id"] for _, row in store.images_page(0, 10_000)]
        assert len(ids) == len(set(ids)) == images
        assert {i.split("/")[0].split("-")[0] for i in ids} == set(cams)
    finally:
        store.close()
