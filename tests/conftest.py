"""Session fixtures shared by the whole suite: a real Kafka broker and its settings."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemnist.data import load_bundled
from edgemnist.model import evaluate, load_model, save_model, train_model
from edgemnist.settings import KafkaSettings
from tests.connect_fixture import ConnectSession, connect_session
from tests.kafka_fixture import ApacheKafka, ExternalKafka, KafkaNotAvailable, TansuKafka, start_kafka
from tests.postgres_fixture import PostgresCluster, postgres_session

Broker = ApacheKafka | ExternalKafka | TansuKafka


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Apache Kafka on loopback for the session (or KAFKA_BOOTSTRAP_SERVERS, or Tansu)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")

    def say(line: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(line)

    try:
        broker = start_kafka(say)
    except KafkaNotAvailable as exc:
        if os.environ.get("EDGE_MNIST_REQUIRE_APACHE_KAFKA"):
            pytest.fail(f"Apache Kafka is required (EDGE_MNIST_REQUIRE_APACHE_KAFKA) but: {exc}")
        pytest.skip(f"no Kafka broker could be started: {exc}")
    say(
        f"\nkafka fixture: {broker.kind} on {broker.bootstrap_servers}, ready in {broker.startup_seconds:.1f} s"
    )
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def kafka_settings(kafka: Broker) -> KafkaSettings:
    return kafka.settings()


@pytest.fixture
def restartable_kafka(kafka: Broker) -> Broker:
    """The broker, for fault tests that stop and restart it; skips (with why) where impossible."""
    if not kafka.can_restart:
        pytest.skip(kafka.restart_skip_reason)
    return kafka


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once per session, as `edge-mnist train` makes it."""
    out = tmp_path_factory.mktemp("models")
    held_out = load_bundled("stream")
    estimator = train_model(load_bundled("train"), progress=False)
    skops_path, _ = save_model(
        estimator,
        out,
        dataset="bundled",
        n_train=4000,
        n_test=len(held_out.images),
        accuracy=0.0,
        uncertain_share=0.0,
    )
    scores = evaluate(load_model(skops_path), held_out)
    assert scores["accuracy"] >= 0.96
    return skops_path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A real PostgreSQL cluster on a free loopback port, for the session."""
    yield from postgres_session()


@pytest.fixture(scope="session")
def connect_worker(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectSession]:
    """One Kafka Connect worker (Debezium PostgreSQL connector) for the session; see tests/connect_fixture.py."""
    yield from connect_session(kafka, tmp_path_factory)
