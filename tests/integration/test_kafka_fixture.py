"""edgemnist.kafka against real Apache Kafka: topics, acked batches, restart, outage."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from edgemnist.errors import BrokerUnavailable
from edgemnist.kafka import EventProducer, ensure_topics, make_consumer
from edgemnist.kafka.settings import KafkaSettings
from tests import helpers

pytestmark = pytest.mark.integration


def create_topic(settings: KafkaSettings, topic: str, partitions: int = 3) -> str:
    """`topic`, created here with `partitions` partitions (it must not exist before)."""
    assert ensure_topics(settings, {topic: partitions}, timeout=120) == [topic]
    return topic


def batch(prefix: str, n: int) -> list[tuple[bytes | None, bytes]]:
    return [(b"camera-%d" % (i % 7), b"%s-%05d" % (prefix.encode(), i)) for i in range(n)]


def read_values(settings: KafkaSettings, topic: str, count: int) -> list[bytes]:
    """Everything in ``topic`` once ``count`` values arrived, plus anything that follows within 2 s."""
    return helpers.read_values(settings, topic, count, settle=2.0)


def test_ensure_topics_creates_partitions_idempotently(kafka_settings, make_topic):
    topic = create_topic(kafka_settings, make_topic("events"), partitions=3)
    assert ensure_topics(kafka_settings, {topic: 3}) == []
    consumer = make_consumer(kafka_settings, [], None)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}
    finally:
        consumer.close()


def test_every_record_of_a_batch_is_acked_and_read_back(kafka_settings, make_topic):
    topic = create_topic(kafka_settings, make_topic("events"))
    sent = batch("a", 500)
    with EventProducer(kafka_settings) as producer:
        results = producer.send_batch(topic, sent, timeout=120)
    assert results == [None] * 500
    got = read_values(kafka_settings, topic, 500)
    assert len(got) == 500
    assert Counter(got) == Counter(value for _, value in sent)


def test_records_survive_a_restart_and_sends_work_after_it(restartable_kafka, kafka_settings, make_topic):
    topic = create_topic(kafka_settings, make_topic("events"))
    before, after = batch("before", 500), batch("after", 100)
    with EventProducer(kafka_settings) as producer:
        assert producer.send_batch(topic, before, timeout=120) == [None] * 500
    port = restartable_kafka.port
    restartable_kafka.restart()
    assert restartable_kafka.port == port
    got = read_values(kafka_settings, topic, 500)
    assert Counter(got) == Counter(v for _, v in before)
    with EventProducer(kafka_settings) as producer:
        assert producer.send_batch(topic, after, timeout=120) == [None] * 100
    got = read_values(kafka_settings, topic, 600)
    assert Counter(got) == Counter(v for _, v in before + after)


def test_send_batch_reports_unavailable_while_the_broker_is_down(
    restartable_kafka, kafka_settings, make_topic
):
    topic = create_topic(kafka_settings, make_topic("events"))
    producer = EventProducer(kafka_settings, close_timeout=2)
    assert producer.send_batch(topic, batch("up", 50), timeout=120) == [None] * 50
    with restartable_kafka.stopped():
        began = time.monotonic()
        results = producer.send_batch(topic, batch("down", 200), timeout=5)
        elapsed = time.monotonic() - began
        producer.close()  # aborts the unsent records, so none of them arrives later
        fresh = EventProducer(kafka_settings).send_batch(topic, batch("fresh", 3), timeout=3)
    assert len(results) == 200
    assert all(isinstance(r, BrokerUnavailable) for r in results), {type(r) for r in results}
    assert restartable_kafka.bootstrap_servers in str(results[0])
    assert elapsed < 5 + 30, "send_batch must give up at about its timeout, not hang"
    assert len(fresh) == 3 and all(isinstance(r, BrokerUnavailable) for r in fresh)
    with EventProducer(kafka_settings) as again:
        assert again.send_batch(topic, batch("back", 20), timeout=120) == [None] * 20
    got = read_values(kafka_settings, topic, 70)
    assert Counter(got) == Counter(v for _, v in batch("up", 50) + batch("back", 20))
