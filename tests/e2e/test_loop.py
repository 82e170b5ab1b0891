"""The learning loop end to end on real Apache Kafka, measured on digits never labelled.

Two cameras whose frames are rotated 25 degrees: LoopA streams the training digits and a person (here,
the test through POST /labels) labels its uncertain images; LoopB streams the 1,000 stream digits and is
never labelled. A retrain command on the control topic must publish a better model, both edges must
hot-swap to it without losing a frame, and LoopB's live accuracy must rise by at least 8 points.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgemnist.kafka import ensure_topics, make_producer
from metro_app.testing import HubProcess, wait_until
from tests.helpers import EDGE_APP, topic_names

pytestmark = pytest.mark.e2e

LABELS_WANTED = 150


@dataclass
class Loop:
    hub: HubProcess
    cameras: dict[str, str]  # camera parameter -> full camera name
    edges: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]
    control_topic: str


def _edge(param: str, source: str, kafka, topics: dict[str, str], model: Path, tmp: Path):  # noqa: ANN001, ANN202
    cmd = [
        *EDGE_APP, "run", "--camera", param, "--source", source, "--distort", "rotate:25", "--repeat", "0",
        "--delay", "0.004", "--metrics-duration", "2", "--bootstrap-servers", kafka.bootstrap_servers,
        "--topic", topics["events"], "--models-topic", topics["models"], "--model", str(model),
        "--outbox", str(tmp / f"{param}.db"),
    ]  # fmt: skip
    log = tmp / f"edge-{param}.log"
    env = {**os.environ, "EDGE_MNIST_STATE_DIR": str(tmp / f"state-{param}")}
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env), log


@pytest.fixture(scope="module")
def loop(kafka, kafka_settings, model_path: Path, tmp_path_factory) -> Iterator[Loop]:
    tmp = tmp_path_factory.mktemp("loop-e2e")
    name = topic_names("loop")
    topics = {k: name(k) for k in ("events", "dlq", "control", "models")}
    ensure_topics(kafka_settings, {topics["events"]: 1, topics["control"]: 1})
    hub = HubProcess(
        kafka.bootstrap_servers,
        topics["events"],
        f"sqlite:///{tmp}/hub.db",
        tmp / "hub.log",
        extra=[
            "--dlq-topic",
            topics["dlq"],
            "--control-topic",
            topics["control"],
            "--models-topic",
            topics["models"],
            "--model",
            str(model_path),
            # the rule's default lets base accuracy fall 2 points; which ~150 images reach the hub first
            # varies run to run, and so does the fall (1.0-1.9 points measured): this test is about the loop
            "--max-base-drop",
            "3",
        ],  # fmt: skip
    ).start()
    host = socket.gethostname()
    edges, logs = {}, {}
    try:
        for param, source in (("LoopA", "bundled-train"), ("LoopB", "bundled")):
            edges[param], logs[param] = _edge(param, source, kafka, topics, model_path, tmp)
        yield Loop(hub, {p: f"{p}-{host}" for p in edges}, edges, logs, topics["control"])
    finally:
        for proc in edges.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        hub.stop()


def _metrics_of(hub: HubProcess, camera: str) -> list[dict[str, Any]]:
    return [
        it["tuple"]
        for it in hub.client.fetch_all("ClassificationMetrics")
        if set(it["tuple"]["camera_metrics"]) == {camera}
    ]


def _live(windows: list[dict[str, Any]]) -> tuple[float, int]:
    labelled = sum(w.get("labelled") or 0 for w in windows)
    return sum(w.get("correct") or 0 for w in windows) / max(1, labelled), labelled


def _stop_and_summary(proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    found = re.findall(r"done: (\{.*\})", log.read_text(errors="replace"))
    assert found, f"no run summary in {log}: {log.read_text(errors='replace')[-2000:]}"
    return json.loads(found[-1])


def test_labels_retrain_publish_hot_swap_and_live_accuracy_rises(loop: Loop, kafka_settings) -> None:
    hub, cam_a, cam_b = loop.hub, loop.cameras["LoopA"], loop.cameras["LoopB"]

    def uncertain_of_a() -> list[dict[str, Any]]:
        items = [it["tuple"] for it in hub.client.fetch_all("UncertainPredictions")]
        mine = [t for t in items if t["camera"] == cam_a and t.get("true_class") is not None]
        return mine if len(mine) >= LABELS_WANTED else []

    to_label = wait_until(uncertain_of_a, 240, f"{LABELS_WANTED} uncertain images of {cam_a}", every=1)
    for t in to_label:  # as a person would in the Correction Station
        hub.client.add_label(t["id"], str(t["true_class"]), "e2e-loop")
    assert len(hub.client.labels()) == len(to_label)

    producer = make_producer(kafka_settings)
    try:
        producer.send(loop.control_topic, b'{"type": "command", "payload": "retrain"}').get(timeout=60)
    finally:
        producer.close()

    def published() -> dict[str, Any] | None:
        return next((m for m in hub.client.models() if m["status"] == "published" and m.get("parent")), None)

    new = wait_until(published, 300, "a published retrained model", every=2)
    assert new["field_accuracy"] > new["parent_field_accuracy"], new
    assert new["n_field_train"] + new["n_field_test"] == len(to_label)
    version = new["version"]

    def swapped_and_measured() -> bool:
        after_b = [w for w in _metrics_of(hub, cam_b) if w.get("model_version") == version]
        after_a = [w for w in _metrics_of(hub, cam_a) if w.get("model_version") == version]
        return bool(after_a) and _live(after_b)[1] >= 2000

    wait_until(
        swapped_and_measured, 240, f"both cameras scoring 2,000 labelled images with {version}", every=2
    )
    summaries = {p: _stop_and_summary(loop.edges[p], loop.logs[p]) for p in ("LoopA", "LoopB")}

    for param, camera in loop.cameras.items():
        scored = summaries[param]["scored"]

        def all_windows_stored(camera: str = camera, scored: int = scored) -> list[dict[str, Any]]:
            ws = _metrics_of(hub, camera)
            return ws if sum(w["images"] for w in ws) >= scored else []

        windows = wait_until(all_windows_stored, 120, f"every metrics window of {camera}", every=1)
        # nothing dropped or scored twice across the swap: the windows add up to exactly what was scored
        assert sum(w["images"] for w in windows) == scored, (camera, summaries[param])
        versions = [w["model_version"] for w in sorted(windows, key=lambda w: w["window_start"])]
        changes = [v for k, v in enumerate(versions) if k == 0 or v != versions[k - 1]]
        assert changes[-1] == version and len(changes) == 2, (camera, changes)
        assert version in summaries[param]["model_versions"]

    windows_b = _metrics_of(hub, cam_b)
    before, n0 = _live([w for w in windows_b if w["model_version"] != version])
    after, n1 = _live([w for w in windows_b if w["model_version"] == version])
    print(f"{cam_b}: live accuracy {before:.3f} (n={n0}) -> {after:.3f} (n={n1}) with {version}")
    assert n0 >= 500 and n1 >= 2000
    assert after >= before + 0.08, (before, after)
    health = {c["name"]: c for c in hub.client.cameras()}
    assert health[cam_b]["model_version"] == version and health[cam_b]["accuracy"] is not None
