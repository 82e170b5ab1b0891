"""Canary rollouts end to end on real Apache Kafka: three cameras, one hub, `metro-app` commands.

(a) a model trained on shuffled labels, imported with `metro-app models import` and rolled out to
one canary camera without a shadow stage (`--no-shadow`), is rolled back by the hub's watcher within
the configured windows; the two other cameras never run it; the registry shows canary, then
rolled_back with the figures.
(b) a good model on a canary camera passes its shadow stage (these cameras know their labels, so the
windows' right answers on the same frames decide), then its canary stage, and is promoted; every
camera then reports its version. Unlabelled cameras: `test_shadow_rollout`.
Both share one stack (hub + three edges streaming labelled digits with 1 s windows).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemnist.data import Dataset, load_bundled
from edgemnist.kafka import ensure_topics
from edgemnist.model import load_model, save_model, train_model
from metro_app.testing import HubProcess, wait_until
from tests.helpers import EDGE_APP, stop_processes, topic_names

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

CAMERAS = ("RollA", "RollB", "RollC")
WINDOWS = 3
METRO_APP = [sys.executable, "-m", "metro_app.cli"]


@dataclass
class Fleet:
    hub: HubProcess
    store_url: str
    model: Path  # the model every edge starts with (the hub's --model)
    cameras: dict[str, str]  # camera parameter -> full name
    bad: Path
    good: Path
    tmp: Path


def _train(out: Path, *, shuffle: bool) -> Path:
    train = load_bundled("train")
    if shuffle:  # the labels permuted: a model that has learnt nothing about digits
        n = 600
        labels = np.random.default_rng(7).permutation(train.labels[:n])
        train = Dataset("bundled-shuffled", train.images[:n], labels)
    estimator = train_model(train, seed=1, progress=False)
    return save_model(estimator, out, dataset=train.name, n_train=len(train), n_test=0, accuracy=0.0,
                      uncertain_share=0.0)[0]  # fmt: skip


def _edge(param: str, kafka, topic: str, model: Path, tmp: Path) -> subprocess.Popen[bytes]:
    cmd = [
        *EDGE_APP, "run", "--camera", param, "--source", "bundled", "--repeat", "0", "--delay", "0.01",
        "--metrics-duration", "1", "--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic,
        "--models-topic", f"{topic}.models", "--model", str(model), "--outbox", str(tmp / f"{param}.db"),
    ]  # fmt: skip
    env = {**os.environ, "EDGE_MNIST_STATE_DIR": str(tmp / f"state-{param}")}
    with open(tmp / f"edge-{param}.log", "wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="module")
def fleet(kafka, kafka_settings, model_path: Path, tmp_path_factory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("rollout-e2e")
    topic = topic_names("fleet")("events")
    ensure_topics(kafka_settings, {topic: 1})
    store_url = f"sqlite:///{tmp}/hub.db"
    with ThreadPoolExecutor(2) as pool:  # the two new models train while the stack starts
        bad = pool.submit(_train, tmp / "bad", shuffle=True)
        good = pool.submit(_train, tmp / "good", shuffle=False)
        hub = HubProcess(
            kafka.bootstrap_servers, topic, store_url, tmp / "hub.log", extra=["--model", str(model_path)]
        ).start()
        host = socket.gethostname()
        edges = [_edge(c, kafka, topic, model_path, tmp) for c in CAMERAS]
        try:
            fleet = Fleet(hub, store_url, model_path, {c: f"{c}-{host}" for c in CAMERAS}, bad.result(),
                          good.result(), tmp)  # fmt: skip
            wait_until(
                lambda: all(len(_windows(fleet, c)) >= 4 for c in CAMERAS),
                180,
                f"4 windows per camera ({tmp})",
            )
            yield fleet
        finally:
            stop_processes(edges)
            hub.stop()


def _windows(fleet: Fleet, param: str) -> list[tuple[int, dict[str, Any]]]:
    """(seq, message) of every metrics window of one camera the hub stored, oldest first."""
    name = fleet.cameras[param]
    return [(it["seq"], it["tuple"]) for it in fleet.hub.client.fetch_all("ClassificationMetrics")
            if set(it["tuple"]["camera_metrics"]) == {name}]  # fmt: skip


def _metro(fleet: Fleet, *args: str, timeout: float = 240) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [*METRO_APP, *args, "--store", fleet.store_url], capture_output=True, text=True, timeout=timeout
    )
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else {}, proc.stderr


def _import(fleet: Fleet, path: Path) -> str:
    code, model, err = _metro(fleet, "models", "import", str(path), "--model", str(fleet.model), "-q")
    assert code == 0, err[-3000:]
    assert model["status"] == "candidate" and model["parent"] == load_model(fleet.model).version
    return str(model["version"])


def test_a_bad_canary_is_rolled_back_and_no_other_camera_runs_it(fleet: Fleet) -> None:
    initial = load_model(fleet.model).version
    bad = _import(fleet, fleet.bad)
    code, r, err = _metro(
        fleet, "rollout", bad, "--canary", "RollA", "--windows", str(WINDOWS), "--timeout", "120", "--wait",
        "--no-shadow",
    )  # fmt: skip
    assert code == 1 and r["state"] == "rolled_back", (r, err[-2000:], fleet.hub.log_tail())
    canary = fleet.cameras["RollA"]
    assert r["cameras"] == [canary] and r["parent"] == initial
    assert "live accuracy" in r["reason"] and "points" in r["reason"], r["reason"]
    assert 1 <= r["figures"][canary]["windows"] <= WINDOWS, "decided within the configured windows"
    assert r["figures"][canary]["accuracy"] < 0.5 < r["baseline"][canary]["accuracy"]

    # the canary camera is back on the model it ran before
    def back() -> bool:
        return _windows(fleet, "RollA")[-1][1]["model_version"] == initial

    wait_until(back, 90, f"{canary} back on {initial}")
    versions = {p: {w["model_version"] for _, w in _windows(fleet, p)} for p in CAMERAS}
    assert bad in versions["RollA"], "the canary ran the bad model"
    assert versions["RollB"] == versions["RollC"] == {initial}, versions

    [model] = [m for m in fleet.hub.client.models() if m["version"] == bad]
    assert [e["status"] for e in model["events"]] == ["candidate", "publishing", "canary", "rolled_back"]
    assert model["status"] == "rolled_back" and "live accuracy" in model["reason"]
    assert "for RollA" in model["events"][1]["reason"]
    assert model["rollout"]["state"] == "rolled_back"
    table = subprocess.run([*METRO_APP, "models", "--store", fleet.store_url], capture_output=True, text=True)
    mine = [line for line in table.stdout.splitlines() if line.startswith(bad)]
    assert table.returncode == 0 and "rolled_back" in mine[0] and "RollA" in mine[0], table.stdout


def test_a_good_canary_is_promoted_and_every_camera_runs_it(fleet: Fleet) -> None:
    good = _import(fleet, fleet.good)
    code, r, err = _metro(
        fleet, "rollout", good, "--canary", "RollB", "--windows", str(WINDOWS), "--timeout", "120", "--wait"
    )
    assert code == 0 and r["state"] == "promoted", (r, err[-2000:], fleet.hub.log_tail())
    assert r["figures"][fleet.cameras["RollB"]]["windows"] >= WINDOWS
    shadow = r["shadow"]
    assert shadow["labelled_frames"] >= 50 and shadow["windows"] >= WINDOWS, (
        "the shadow stage ran on labelled frames"
    )
    assert r["reason"].startswith("promoted") or "within bounds" in r["reason"], r["reason"]

    def everyone() -> bool:
        return all(_windows(fleet, p)[-1][1]["model_version"] == good for p in CAMERAS)

    wait_until(everyone, 90, f"every camera reporting {good}")
    [model] = [m for m in fleet.hub.client.models() if m["version"] == good]
    assert [e["status"] for e in model["events"]] == [
        "candidate",
        "publishing",
        "shadow",
        "publishing",
        "canary",
        "publishing",
        "published",
    ]
    assert "promoted by rollout" in model["reason"] and "every camera" in model["reason"]
    health = {c["name"]: c["model_version"] for c in fleet.hub.client.cameras()}
    assert all(health[fleet.cameras[p]] == good for p in CAMERAS), health
