"""Rollouts in shadow on cameras that know no labels, end to end on real Apache Kafka.

Three cameras stream an IDX file of digits without its labels file (`--source mnist-idx:IMAGES`), so
no window carries a right answer; ShadowA is drifting (its digits rotated 25 degrees). One hub.

(a) A confidently wrong model (trained with 1<->7 and 3<->8 swapped) is rolled out to ShadowA. It
scores there in shadow; the test labels the disagreement images the hub lists with their true digit
through POST /labels, as a person would. The rollout ends rolled back with the serving model right
on more of them, and no camera ever serves the bad model: every window names the old one.
(b) A model trained on the rotated digits too (genuinely better on ShadowA's drift) passes the same
shadow stage, its canary stage, and then serves every camera.
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
from edgemnist.distort import parse_distortion
from edgemnist.kafka import ensure_topics
from edgemnist.model import load_model, save_model, train_model
from metro_app.testing import HubProcess, wait_until
from tests.helpers import EDGE_APP, stop_processes, topic_names

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CAMERAS = {"ShadowA": "rotate:25", "ShadowB": "", "ShadowC": ""}
CANARY = "ShadowA"
METRO_APP = [sys.executable, "-m", "metro_app.cli"]


@dataclass
class Fleet:
    hub: HubProcess
    store_url: str
    model: Path  # the model every edge starts with (the hub's --model)
    initial: str
    cameras: dict[str, str]  # camera parameter -> full name
    truth: np.ndarray  # the digit of each frame of the IDX file, which the edges never see
    swapped: Path
    better: Path
    tmp: Path


def _write_idx(path: Path, images: np.ndarray) -> Path:
    n, h, w = images.shape
    header = b"".join(v.to_bytes(4, "big") for v in (2051, n, h, w))
    path.write_bytes(header + images.astype(np.uint8).tobytes())
    return path


def _train(out: Path, data: Dataset) -> Path:
    estimator = train_model(data, seed=3, progress=False)
    return save_model(estimator, out, dataset=data.name, n_train=len(data), n_test=0, accuracy=0.0,
                      uncertain_share=0.0)[0]  # fmt: skip


def _swapped() -> Dataset:
    """The training digits with 1<->7 and 3<->8 swapped: sure of itself, wrong on four classes."""
    train = load_bundled("train")
    swap = np.arange(10)
    swap[[1, 7, 3, 8]] = [7, 1, 8, 3]
    return Dataset("bundled-swapped", train.images, swap[train.labels])


def _with_drift() -> Dataset:
    """The training digits and the same digits rotated as ShadowA's are, with their labels."""
    train = load_bundled("train")
    rotated = parse_distortion(CAMERAS[CANARY]).apply(train.images)
    images = np.concatenate([train.images, rotated])
    return Dataset("bundled+rotate25", images, np.concatenate([train.labels, train.labels]))


def _edge(param: str, kafka, topic: str, source: str, model: Path, tmp: Path) -> subprocess.Popen[bytes]:
    cmd = [
        *EDGE_APP, "run", "--camera", param, "--source", source, "--repeat", "0", "--delay", "0.01",
        "--metrics-duration", "1", "--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic,
        "--models-topic", f"{topic}.models", "--model", str(model), "--outbox", str(tmp / f"{param}.db"),
    ]  # fmt: skip
    if CAMERAS[param]:
        cmd += ["--distort", CAMERAS[param]]
    env = {**os.environ, "EDGE_MNIST_STATE_DIR": str(tmp / f"state-{param}")}
    with open(tmp / f"edge-{param}.log", "wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.fixture(scope="module")
def shadow_fleet(kafka, kafka_settings, model_path: Path, tmp_path_factory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("shadow-e2e")
    topic = topic_names("shadow")("events")
    ensure_topics(kafka_settings, {topic: 1})
    stream = load_bundled("stream")
    source = f"mnist-idx:{_write_idx(tmp / 'stream-images-idx3-ubyte', stream.images)}"
    with ThreadPoolExecutor(2) as pool:  # the two candidates train while the stack starts
        swapped = pool.submit(_train, tmp / "swapped", _swapped())
        better = pool.submit(_train, tmp / "better", _with_drift())
        store_url = f"sqlite:///{tmp}/hub.db"
        hub = HubProcess(
            kafka.bootstrap_servers, topic, store_url, tmp / "hub.log",
            extra=["--model", str(model_path)],
        ).start()  # fmt: skip
        edges = [_edge(c, kafka, topic, source, model_path, tmp) for c in CAMERAS]
        host = socket.gethostname()
        try:
            fleet = Fleet(hub, store_url, model_path, load_model(model_path).version, {c: f"{c}-{host}" for c in CAMERAS},
                          stream.labels, swapped.result(), better.result(), tmp)  # fmt: skip
            wait_until(
                lambda: all(len(_windows(fleet, c)) >= 4 for c in CAMERAS), 180, f"4 windows each ({tmp})"
            )
            yield fleet
        finally:
            stop_processes(edges)
            hub.stop()


def _windows(fleet: Fleet, param: str) -> list[dict[str, Any]]:
    name = fleet.cameras[param]
    return [it["tuple"] for it in fleet.hub.client.fetch_all("ClassificationMetrics")
            if set(it["tuple"]["camera_metrics"]) == {name}]  # fmt: skip


def _import(fleet: Fleet, path: Path) -> str:
    """`metro-app models import` the candidate, as an operator would."""
    cmd = [
        *METRO_APP,
        "models",
        "import",
        str(path),
        "--store",
        fleet.store_url,
        "--model",
        str(fleet.model),
        "-q",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(json.loads(proc.stdout.strip().splitlines()[-1])["version"])


def _label_disagreements(fleet: Fleet, rollout: int, labelled: set[str]) -> dict[str, Any]:
    """Label each newly listed disagreement with its true digit (the frame number is the id's last part)."""
    client = fleet.hub.client
    listed = client._json(f"/rollouts/{rollout}/disagreements?max=1000")
    for item in listed["items"]:
        if item["image_id"] in labelled:
            continue
        frame = int(item["image_id"].rsplit("/", 1)[1])
        client.add_label(item["image_id"], str(int(fleet.truth[frame % len(fleet.truth)])), "inspector")
        labelled.add(item["image_id"])
    return client._json(f"/rollouts/{rollout}")


def _roll_out(fleet: Fleet, version: str, timeout: float = 300) -> dict[str, Any]:
    """Start a rollout to the canary through the API, label what the hub lists until it is decided."""
    client = fleet.hub.client
    r = client._json(f"/models/{version}/rollout", body={"canary": [CANARY], "windows": 3, "timeout": 240})
    assert r["stage"] == "pending" and r["shadow"] == {"labels": 20, "alpha": 0.05}, r
    labelled: set[str] = set()
    seen_stages = set()

    def decided() -> bool:
        now = _label_disagreements(fleet, r["rollout"], labelled)
        seen_stages.add(now["stage"])
        return now["state"] in ("promoted", "rolled_back", "failed")

    wait_until(decided, timeout, f"rollout {r['rollout']} of {version} decided ({fleet.tmp})")
    final = client._json(f"/rollouts/{r['rollout']}")
    final["seen_stages"] = seen_stages
    final["labelled"] = len(labelled)
    return final


def test_a_confidently_wrong_model_is_rolled_back_in_shadow_and_never_serves(shadow_fleet: Fleet) -> None:
    fleet = shadow_fleet
    bad = _import(fleet, fleet.swapped)
    start = len(fleet.hub.client.fetch_all("ClassificationMetrics"))
    r = _roll_out(fleet, bad)
    assert r["state"] == "rolled_back" and r["stage"] == "rolled back", (r, fleet.hub.log_tail())
    shadow = r["shadow"]
    assert shadow["serving_right"] > shadow["candidate_right"] and shadow["p_value"] < 0.05, shadow
    assert shadow["agree"] < shadow["images"], "the swapped model disagreed on frames"
    assert f"serving right {shadow['serving_right']}" in r["reason"]
    # no camera ever served it: every window after the rollout began names the old model
    later = fleet.hub.client.fetch_all("ClassificationMetrics")[start:]
    assert later and {w["tuple"]["model_version"] for w in later} == {fleet.initial}
    [model] = [m for m in fleet.hub.client.models() if m["version"] == bad]
    assert [e["status"] for e in model["events"]][-2:] == ["shadow", "rolled_back"], model["events"]
    # the canary camera stops shadow scoring: its newest windows carry no shadow figures
    wait_until(lambda: "shadow" not in _windows(fleet, CANARY)[-1], 60, "the shadow withdrawn on ShadowA")


def test_a_model_better_on_the_drift_passes_shadow_and_canary_then_serves_everywhere(
    shadow_fleet: Fleet,
) -> None:
    fleet = shadow_fleet
    better = _import(fleet, fleet.better)
    r = _roll_out(fleet, better)
    assert r["state"] == "promoted", (r, fleet.hub.log_tail())
    assert {"shadow", "canary"} <= r["seen_stages"] or r["shadow"]["candidate_right"] >= 20, r
    shadow = r["shadow"]
    assert shadow["candidate_right"] > shadow["serving_right"] and shadow["needed"] == 0, shadow
    wait_until(
        lambda: all(_windows(fleet, c)[-1]["model_version"] == better for c in CAMERAS),
        120,
        "every camera on it",
    )
