"""A live stack for end-to-end tests: real Kafka, a hub and two streaming edge cameras, per module."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from edgemnist.kafka import ensure_topics
from metro_app.testing import HubProcess, wait_until
from tests.e2e.stack import ARTIFACTS, EDGES, Stack, ready, start_edge
from tests.helpers import topic_names


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
        stack.edges = [start_edge(c, d, kafka, topic, model_path, tmp) for c, d in EDGES]
        wait_until(lambda: ready(stack, 30), 180, f"both cameras and 30 uncertain images at the hub ({tmp})")
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
