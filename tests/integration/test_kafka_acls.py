"""Kafka ACLs on a real broker: each principal may do exactly what its role needs (issue 21.4).

One Apache Kafka node with SASL_SSL (SCRAM) users `admin`, `edge` and `hub`, and the standard
KRaft authorizer: nothing is allowed that an ACL does not allow. The admin creates the topics
and the ACLs of `edgemnist.kafka.needs`, the same list the docs print as kafka-acls.sh lines.
Each allowed action works; each forbidden one fails with an authorisation error that names
the user, the topic and the missing permission.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from edgemnist.errors import AccessDenied
from edgemnist.kafka import EventProducer, TopicReader, create_acls, ensure_topics, make_group_consumer, needs
from edgemnist.testing.brokers import KafkaNotAvailable
from metro_app.ingest.control import control_group_id
from metro_app.ingest.loop import group_id
from tests.helpers import EDGE_APP
from tests.kafka_secure import SecureKafka

USERS = ("admin", "edge", "hub")


@pytest.fixture(scope="module")
def acl_kafka() -> Iterator[SecureKafka]:
    broker = SecureKafka({u: f"{u}-pw-{secrets.token_urlsafe(12)}" for u in USERS}, super_users=("admin",))
    try:
        broker.start()
    except KafkaNotAvailable as exc:
        broker.close()
        pytest.fail(f"Apache Kafka with SASL_SSL and an authorizer could not start: {exc}")
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def names(acl_kafka: SecureKafka) -> dict[str, str]:
    topics = {k: f"acl.{k}" for k in ("events", "models", "control", "dlq")}
    names = {
        **topics,
        "events_group": group_id(topics["events"]),
        "control_group": control_group_id(topics["control"]),
    }
    admin = acl_kafka.settings("admin")
    ensure_topics(admin, {t: 1 for t in topics.values()})
    grants = needs("edge", "User:edge", names) + needs("hub", "User:hub", names)
    assert create_acls(admin, grants) == sum(len(g.operations) for g in grants)
    return names


def send(broker: SecureKafka, user: str, topic: str) -> BaseException | None:
    with EventProducer(broker.settings(user)) as producer:
        [result] = producer.send_batch(topic, [(b"k", b'{"probe": 1}')], timeout=20)
    return result


def read(broker: SecureKafka, user: str, topic: str) -> int:
    reader = TopicReader(broker.settings(user), topic)
    try:
        assert reader.open(), f"{user} sees no partition of {topic}"
        return len(reader.poll(5))
    finally:
        reader.close()


def test_the_edge_writes_events_and_reads_models_and_nothing_else(acl_kafka, names):
    assert send(acl_kafka, "edge", names["events"]) is None
    assert send(acl_kafka, "admin", names["models"]) is None
    assert read(acl_kafka, "edge", names["models"]) >= 1
    for topic in (names["models"], names["control"]):
        denied = send(acl_kafka, "edge", topic)
        assert isinstance(denied, AccessDenied), denied
        assert f"Kafka user 'edge' may not write topic '{topic}'" in str(denied) and "Write" in str(denied)
    with pytest.raises(
        AccessDenied, match=f"'edge' may not read topic '{names['events']}'.*Read and Describe"
    ):
        read(acl_kafka, "edge", names["events"])


def test_the_hub_reads_events_and_control_in_its_groups_and_writes_models(acl_kafka, names):
    assert send(acl_kafka, "hub", names["models"]) is None
    assert send(acl_kafka, "hub", names["dlq"]) is None
    assert send(acl_kafka, "admin", names["control"]) is None
    for topic, group in (
        (names["events"], names["events_group"]),
        (names["control"], names["control_group"]),
    ):
        consumer = make_group_consumer(acl_kafka.settings("hub"), topic, group)
        try:
            got = []
            for _ in range(20):
                got += [r for recs in consumer.poll(timeout_ms=500).values() for r in recs]
                if got:
                    break
            assert got, f"the hub read nothing from {topic} in group {group}"
            consumer.commit()
        finally:
            consumer.close()
    denied = send(acl_kafka, "hub", names["events"])  # the hub never writes the edges' topic
    assert isinstance(denied, AccessDenied) and f"'hub' may not write topic '{names['events']}'" in str(
        denied
    )


def test_an_edge_without_write_on_its_topic_says_which_permission_and_keeps_its_messages(
    acl_kafka, names, model_path, tmp_path
):
    s = acl_kafka.settings("edge")
    env = {
        **os.environ,
        "EDGE_MNIST_BOOTSTRAP_SERVERS": acl_kafka.bootstrap_servers,
        "EDGE_MNIST_SECURITY_PROTOCOL": s.security_protocol,
        "EDGE_MNIST_SASL_MECHANISM": s.sasl_mechanism,
        "EDGE_MNIST_SASL_USERNAME": s.sasl_username,
        "EDGE_MNIST_SASL_PASSWORD": s.sasl_password,
        "EDGE_MNIST_SSL_CAFILE": s.ssl_cafile,
    }
    run = subprocess.run(
        [*EDGE_APP, "run", "--camera", "TestAcl", "--repeat", "1", "--metrics-duration", "1",
         "--topic", names["control"], "--models-topic", "",
         "--model", str(model_path), "--outbox", str(tmp_path / "o.db"), "--drain-timeout", "5"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert s.sasl_password not in run.stderr
    assert run.returncode == 3, run.stderr[-2000:]  # the outbox could not be drained: kept, not lost
    assert f"Kafka user 'edge' may not write topic '{names['control']}'" in run.stderr, run.stderr[-2000:]
    assert "grant it Write and Describe on that topic" in run.stderr
