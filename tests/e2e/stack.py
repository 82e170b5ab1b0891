"""The live stack end-to-end tests run against: what it is (`Stack`), and how its edges start.

The `live_stack` fixture in `tests/e2e/conftest.py` starts one per module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgemnist.procs import stop_all
from metro_app.testing import HubProcess

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's chromium, for Playwright's `executable_path`."""
    import pytest

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("the browser test needs Debian's chromium package (apt-get install chromium)")
    return path


# (camera parameter, delay between images): a normal camera and a Test camera that sends every image home
EDGES = (("CamA", 0.05), ("TestCamB", 0.25))


@dataclass
class Stack:
    """What a test needs to point a dashboard at the stack and check the hub's store."""

    hub: HubProcess
    store_url: str
    topic: str
    bootstrap_servers: str
    cameras: list[str]
    edges: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return self.hub.client.base

    @property
    def token(self) -> str:
        return self.hub.token

    def env(self) -> dict[str, str]:
        """Environment for a notebook kernel or a Voila server pointed at this stack."""
        return {
            **os.environ,
            "EDGE_MNIST_API_URL": self.api_url,
            "EDGE_MNIST_API_TOKEN": self.token,
            "EDGE_MNIST_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "EDGE_MNIST_TOPIC": self.topic,
        }


def start_edge(cam: str, delay: float, kafka, topic: str, model: Path, tmp: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "edge_app.cli", "run",
        "--camera", cam, "--delay", str(delay), "--repeat", "0", "--metrics-duration", "2",
        "--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic,
        "--model", str(model), "--outbox", str(tmp / f"{cam}.db"), "--models-topic", f"{topic}.models",
    ]  # fmt: skip
    log = open(tmp / f"edge-{cam}.log", "wb")  # noqa: SIM115 - the child keeps it open
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def ready(stack: Stack, min_images: int) -> bool:
    names = {c["name"] for c in stack.hub.client.cameras()}
    return set(stack.cameras) <= names and stack.hub.health()["stored"]["images"] >= min_images


@contextlib.contextmanager
def voila_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`voila notebooks/render-metro-views.ipynb` on a free loopback port with `env`; yields its URL."""
    from metro_app.testing import free_port, wait_until

    port = free_port()
    cmd = [
        sys.executable, "-m", "voila", str(NOTEBOOKS / "render-metro-views.ipynb"),
        "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
    ]  # fmt: skip
    env = {**env, "EDGE_MNIST_DASHBOARD_TICKS": "0", "MPLBACKEND": "Agg"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"voila exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:  # a GET of the page would start a kernel: only check that the server listens
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            return False

    try:
        wait_until(up, 90, f"voila on {url}")
        yield url
    finally:
        stop_all([proc])
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log_path, ARTIFACTS / log_path.name)
