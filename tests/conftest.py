"""Session fixtures shared by the whole suite: a real Kafka broker and its settings."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgemnist.data import load_bundled
from edgemnist.kafka.settings import KAFKA_CLIENTS, KafkaSettings
from edgemnist.model import evaluate, load_model, save_model, train_model
from edgemnist.testing.brokers import ApacheKafka, ExternalKafka, KafkaNotAvailable
from edgemnist.testing.postgres import PostgresCluster, postgres_session
from tests.brokers import TansuKafka, start_kafka
from tests.connect_fixture import ConnectSession, connect_session
from tests.helpers import topic_names
from tests.kafka_cluster import KafkaCluster
from tests.kafka_secure import SecureKafka

Broker = ApacheKafka | ExternalKafka | TansuKafka

NO_SKIPS = "EDGE_MNIST_NO_SKIPS"  # `make test` sets it: the suite must not pass by skipping


def _no_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under EDGE_MNIST_NO_SKIPS, a skip is a failure that keeps the skip's reason (what to install)."""
    if not (report.skipped and os.environ.get(NO_SKIPS)) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"skipped, but `make test` allows no skips ({NO_SKIPS}=1): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _no_skip(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _no_skip(outcome.get_result())  # type: ignore[attr-defined]


@pytest.fixture(scope="session", autouse=True)
def model_signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One key pair for the session, as a deployment has: every hub and `metro-app` command the
    tests start signs with it (EDGE_MNIST_SIGNING_KEY) and every edge trusts it
    (EDGE_MNIST_TRUSTED_KEYS). Tests of unsigned or foreign models set their own."""
    from edgemnist.signing import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, init_keys

    keys = tmp_path_factory.mktemp("keys")
    init_keys(keys)
    saved = {k: os.environ.get(k) for k in ("EDGE_MNIST_SIGNING_KEY", "EDGE_MNIST_TRUSTED_KEYS")}
    os.environ["EDGE_MNIST_SIGNING_KEY"] = str(keys / PRIVATE_KEY_FILE)
    os.environ["EDGE_MNIST_TRUSTED_KEYS"] = str(keys / PUBLIC_KEY_FILE)
    yield keys
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


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


@pytest.fixture(scope="module", params=KAFKA_CLIENTS)
def hub_kafka_client(request: pytest.FixtureRequest) -> str:
    """The client the hub's events consumer runs on (`--kafka-client`): every hub test runs on each."""
    return str(request.param)


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """Three Apache Kafka KRaft nodes on loopback (replication 3, min.insync.replicas 2).

    Started only by the tests that use it; tests may kill and restart nodes, and must leave all
    three running.
    """
    cluster = KafkaCluster()
    try:
        cluster.start()
    except KafkaNotAvailable as exc:
        cluster.close()
        pytest.fail(f"a three-broker Apache Kafka cluster could not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def secure_kafka() -> Iterator[SecureKafka]:
    """Apache Kafka whose only listener is SASL_SSL (SCRAM-SHA-512 user `edge`, a throwaway CA).

    Started only by the tests that use it; never replaced by Tansu or KAFKA_BOOTSTRAP_SERVERS.
    """
    import secrets

    broker = SecureKafka({"edge": f"edge-pw-{secrets.token_urlsafe(12)}"})
    try:
        broker.start()
    except KafkaNotAvailable as exc:
        broker.close()
        pytest.fail(f"Apache Kafka with SASL_SSL could not start: {exc}")
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def restartable_kafka(kafka: Broker) -> Broker:
    """The broker, for fault tests that stop and restart it; skips (with why) where impossible."""
    if not kafka.can_restart:
        pytest.skip(kafka.restart_skip_reason)
    return kafka


@pytest.fixture
def make_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Topic names of this test's own: `make_topic("events")` -> "<test name>-<8 hex>.events".

    See `tests.helpers.topic_names`, which fixtures that outlive one test call directly.
    """
    return topic_names(request.node.name.removeprefix("test_"))


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
