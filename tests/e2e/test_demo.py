"""`edge-mnist demo` as a user runs it: three cameras, a hub, the embedded broker; nothing left behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgemnist_demo import camera_plan
from edgemnist_demo.broker import free_port

pytestmark = pytest.mark.e2e

DEMO = [str(Path(sys.executable).parent / "edge-mnist"), "demo", "--no-browser", "--no-dashboard"]


def test_demo_runs_three_cameras_and_stops_everything(model_path, tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "EDGE_MNIST_BOOTSTRAP_SERVERS")
    }
    proc = subprocess.run(
        [
            *DEMO,
            "--duration",
            "40",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "s"),
            "--model",
            str(model_path),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    cams = summary["cameras"]
    assert len(cams) == 3 and any(name.startswith("TestCamera-") for name in cams)
    assert all(c["scored"] > 0 for c in cams.values())
    test_cam = next(c for name, c in cams.items() if name.startswith("TestCamera-"))
    assert test_cam["uncertain_sent"] == test_cam["scored"]  # a Test camera sends every image
    assert summary["stored_metrics"] > 0 and summary["dlq"] == 0
    assert summary["stored_images"] == sum(c["uncertain_sent"] for c in cams.values())
    assert "stopped 5 processes" in proc.stderr
    # the API token is said on the terminal only: in no log, outbox or file of the state dir
    token = env.get("EDGE_MNIST_API_TOKEN")
    assert (
        "token:  yours, from EDGE_MNIST_API_TOKEN" if token else "token:  demo-token (operator"
    ) in proc.stderr
    said = (token or "demo-token").encode()
    assert [p.name for p in (tmp_path / "s").rglob("*") if p.is_file() and said in p.read_bytes()] == []
    # Nothing the demo started survives it: edges, hub job, broker.
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "s")], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == []
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # nothing listens on the hub's port any more


def test_ctrl_c_stops_every_process_the_demo_started(model_path, tmp_path):
    import signal
    import time
    import urllib.request

    port = free_port()
    state = tmp_path / "s"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "EDGE_MNIST_BOOTSTRAP_SERVERS")
    }
    cmd = [*DEMO, "--port", str(port), "--state-dir", str(state), "--model", str(model_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        stored = 0
        while time.monotonic() < deadline and stored == 0:
            time.sleep(2)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    stored = json.load(r)["stored"]["metrics"]
            except OSError:
                pass
        assert stored > 0, "the demo's hub never stored a metrics window"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "stopping (Ctrl-C or SIGTERM)" in err and "stopped 5 processes" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert len(summary["cameras"]) == 3 and summary["stored_metrics"] > 0
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_demo_refuses_a_port_in_use(model_path, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [
                *DEMO,
                "--duration",
                "5",
                "--port",
                str(port),
                "--model",
                str(model_path),
                "--state-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert f"port {port}" in proc.stderr and "already in use" in proc.stderr


def test_camera_plan_names_and_delays():
    plan = camera_plan(3)
    assert [n for n, _, _ in plan] == ["Camera1", "Rotated25", "TestCamera"]
    assert len({d for _, d, _ in plan}) == 3
    assert [x for _, _, x in plan] == ["", "rotate:25", ""]  # one drifting camera for the learning loop
