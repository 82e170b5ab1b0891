"""Every notebook executed by papermill (nbclient underneath, a real kernel) against a live stack;
the assertions read what the cells printed and displayed."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from edgemnist.kafka import ensure_topics
from tests.e2e.stack import ARTIFACTS, NOTEBOOKS, Stack

pytestmark = pytest.mark.e2e


def run_notebook(name: str, stack: Stack, tmp_path: Path, **parameters: Any) -> tuple[str, int]:
    """Execute notebooks/<name>.ipynb; return everything it printed and how many PNG images it showed."""
    papermill = pytest.importorskip(
        "papermill", reason="the dashboards extra is not installed (pip install -e '.[dashboards]')"
    )
    params = {
        "API_URL": stack.api_url,
        "API_TOKEN": stack.token,
        "BOOTSTRAP_SERVERS": stack.bootstrap_servers,
        "TOPIC": stack.topic,
        **parameters,
    }
    out = ARTIFACTS / f"{name}.ipynb"
    nb = papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(out),
        parameters=params,
        cwd=str(NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=400,
    )
    text, pngs = [], 0
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                text.append(o["text"])
            elif "data" in o:
                pngs += "image/png" in o["data"]
                text.append(o["data"].get("text/plain", ""))
    return "\n".join(text), pngs


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_stack: Stack) -> None:
    """Jobs and outboxes a notebook creates go to this test's directory; the kernel inherits the env."""
    monkeypatch.setenv("EDGE_MNIST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("EDGE_MNIST_API_TOKEN", live_stack.token)
    monkeypatch.setenv("MPLBACKEND", "Agg")


def test_render_metro_views(live_stack: Stack, tmp_path: Path) -> None:
    text, pngs = run_notebook("render-metro-views", live_stack, tmp_path, TICKS=3, INTERVAL=1.0)
    assert "hub status: ok" in text
    for cam in live_stack.cameras:
        scored = re.search(rf"camera {re.escape(cam)}: (\d+) images scored", text)
        assert scored and int(scored.group(1)) > 0, text
    opened = re.search(r"camera opened: (\S+) \((\d+) images in its last window\)", text)
    assert opened and opened.group(1) in live_stack.cameras and int(opened.group(2)) > 0, text
    assert f"chart: {opened.group(1)}" in text  # the worst camera opens by itself
    shown = int(re.search(r"gallery: (\d+) uncertain images", text).group(1))  # type: ignore[union-attr]
    assert shown > 0
    assert re.search(r"correction station: 0 of (\d+) labelled", text)
    assert "refreshes: 3, failed: 0" in text
    assert pngs >= 1 + 3  # the opened camera's chart, then the gallery's frame, prepared image and scores
    assert "VBox(" in text  # the live widget itself was displayed


def test_testing_kafka(live_stack: Stack, tmp_path: Path) -> None:
    text, pngs = run_notebook(
        "testing-kafka", live_stack, tmp_path, MAX_WINDOWS=4, SHOW_IMAGES=True, MAX_IMAGES=2, TIMEOUT=90.0
    )
    assert len(re.findall(r"^metrics window at ", text, re.M)) >= 4
    for cam in live_stack.cameras:
        assert re.search(rf"camera {re.escape(cam)}: certain \d+ \[", text), text[-3000:]
    assert "image rate" in text and "queueing overhead" in text and "p50/75/90/99" in text
    assert len(re.findall(r"^uncertain image from ", text, re.M)) == 2
    assert pngs == 2 * 2  # frame beside prepared image, and the scores, per image
    assert re.search(r"read [1-9]\d* metrics windows", text)


def test_build_edge_application(live_stack: Stack, tmp_path: Path, model_path: Path) -> None:
    camera = f"NbCam{time.time_ns() % 100000}"
    text, pngs = run_notebook(
        "build-edge-application",
        live_stack,
        tmp_path,
        MODEL=str(model_path),
        BUILD_DIR=str(tmp_path / "build"),
        BUILD_IMAGE=False,
        CAMERA=camera,
        EDGE_REPEAT=1,
    )
    assert f"model: {model_path}" in text
    assert pngs == 1  # the sample predictions
    assert len(re.findall(r"^predicted \d \(\d\.\d\d\), true \d$", text, re.M)) == 8
    assert "edge-camera-classifier-app:v1" in text
    assert (tmp_path / "build" / "EdgeCameraClassifier.zip").is_file()
    sent = re.search(rf"edge {camera}-\S+: scored (\d+), sent (\d+) uncertain", text)
    assert sent and int(sent.group(1)) > 0, text[-3000:]
    assert re.search(rf"the hub sees camera {camera}-\S+: \d+ images", text), text[-3000:]


def test_build_metro_application(live_stack: Stack, tmp_path: Path, kafka_settings, make_topic) -> None:
    topic = make_topic("events")
    ensure_topics(kafka_settings, {topic: 1})
    job = f"nb-hub-{time.time_ns() % 100000}"
    text, _ = run_notebook(
        "build-metro-application",
        live_stack,
        tmp_path,
        JOB_NAME=job,
        HUB_TOPIC=topic,
        STORE=f"sqlite:///{tmp_path}/nb-hub.db",
        BUILD_DIR=str(tmp_path / "build"),
        CANCEL_AT_END=True,
    )
    assert (tmp_path / "build" / "MetroEdge.zip").is_file()
    pid = int(re.search(rf"job {job}: pid (\d+)", text).group(1))  # type: ignore[union-attr]
    assert f"job {job} healthy" in text
    assert re.search(rf"^{job}\trunning\tpid {pid}", text, re.M), text[-3000:]
    assert f"job {job}: stopped" in text
    assert not os.path.exists(f"/proc/{pid}") or b"metro_app" not in Path(f"/proc/{pid}/cmdline").read_bytes()
