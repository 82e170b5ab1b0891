"""The live stack end-to-end tests run against: what it is (`Stack`), and how its edges start.

The `live_stack` fixture in `tests/e2e/conftest.py` starts one per module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from metro_app.testing import HubProcess

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

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
