"""A live stack for end-to-end tests: real Kafka, a hub and two streaming edge cameras, per module."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgemnist.kafka import ensure_topics
from metro_app.testing import HubProcess, wait_until
from tests.helpers import topic_names

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


def _start_edge(cam: str, delay: float, kafka, topic: str, model: Path, tmp: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "edge_app.cli", "run",
        "--camera", cam, "--delay", str(delay), "--repeat", "0", "--metrics-duration", "2",
        "--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic,
        "--model", str(model), "--outbox", str(tmp / f"{cam}.db"), "--models-topic", f"{topic}.models",
    ]  # fmt: skip
    log = open(tmp / f"edge-{cam}.log", "wb")  # noqa: SIM115 - the child keeps it open
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def _ready(stack: Stack, min_images: int) -> bool:
    names = {c["name"] for c in stack.hub.client.cameras()}
    return set(stack.cameras) <= names and stack.hub.health()["stored"]["images"] >= min_images


@pytest.fixture(scope="module")
def live_stack(kafka, kafka_settings, model_path, tmp_path_factory) -> Iterator[Stack]:
    """Hub on a free loopback port with a SQLite store, and two edges streaming until the module ends."""
    tmp = tmp_path_factory.mktemp("stack")
    ARTIFACTS.mkdir(exist_ok=True)
    topic = topic_names("live-stack")("events")
    ensure_topics(kafka_settings, {topic: 1})
    store_url = f"sqlite:///{tmp}/hub.db"
    hub = HubProcess(
        kafka.bootstrap_servers, topic, store_url, tmp / "hub.log", extra=["--model", str(model_path)]
    ).start()
    host = socket.gethostname()
    stack = Stack(hub, store_url, topic, kafka.bootstrap_servers, [f"{c}-{host}" for c, _ in EDGES])
    try:
        stack.edges = [_start_edge(c, d, kafka, topic, model_path, tmp) for c, d in EDGES]
        wait_until(lambda: _ready(stack, 30), 180, f"both cameras and 30 uncertain images at the hub ({tmp})")
        yield stack
    finally:
        for proc in stack.edges:
            proc.terminate()
        for proc in stack.edges:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        hub.stop()
