"""ConfluentConsumer's delivery semantics against a fake librdkafka consumer: commit what was handed
out, never past a rewound batch, nothing of a revoked partition; the connection settings' mapping."""

from __future__ import annotations

from typing import Any

import confluent_kafka
import pytest
from kafka.structs import TopicPartition

from edgemnist.errors import ConfigError
from edgemnist.kafka import make_group_consumer
from edgemnist.kafka.confluent import ConfluentConsumer, librdkafka_config
from edgemnist.kafka.settings import KafkaSettings


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._v


class FakeMeta:
    def __init__(self, topics: list[str]) -> None:
        self.topics = {t: type("T", (), {"error": None})() for t in topics}


class FakeConsumer:
    """librdkafka's Consumer as the adapter uses it; `queue` is what the next consume returns."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.queue: list[FakeMessage] = []
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.subscribed: dict[str, Any] = {}

    def list_topics(self, timeout: float) -> FakeMeta:
        return FakeMeta(["events"])

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.subscribed = {"topics": topics, **callbacks}

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return out

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.commits.append(([(o.topic, o.partition, o.offset) for o in offsets], asynchronous))

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def close(self) -> None:
        pass


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[FakeConsumer]:
    made: list[FakeConsumer] = []

    def factory(config: dict[str, Any]) -> FakeConsumer:
        made.append(FakeConsumer(config))
        return made[-1]

    monkeypatch.setattr(confluent_kafka, "Consumer", factory)
    return made


SETTINGS = KafkaSettings(bootstrap_servers=("127.0.0.1:9092",))


def messages(partition: int, offsets: range) -> list[FakeMessage]:
    return [FakeMessage("events", partition, o, b"v%d" % o) for o in offsets]


def test_poll_groups_records_by_partition_and_commit_sends_the_next_offsets(fake):
    consumer = ConfluentConsumer(SETTINGS, ["events"], "g")
    lib = fake[0]
    assert lib.config["enable.auto.commit"] is False and lib.config["enable.auto.offset.store"] is False
    lib.queue = messages(0, range(0, 3)) + messages(1, range(10, 12))
    batch = consumer.poll(timeout_ms=100, max_records=10)
    assert {tp: [r.offset for r in rs] for tp, rs in batch.items()} == {
        TopicPartition("events", 0): [0, 1, 2],
        TopicPartition("events", 1): [10, 11],
    }
    assert batch[TopicPartition("events", 1)][0].value == b"v10"
    consumer.commit()
    assert lib.commits == [([("events", 0, 3), ("events", 1, 12)], False)]


def test_a_rewound_batch_is_never_committed_past_its_first_record(fake):
    consumer = ConfluentConsumer(SETTINGS, ["events"], "g")
    lib = fake[0]
    lib.queue = messages(0, range(5, 9))
    batch = consumer.poll(timeout_ms=100, max_records=10)
    tp = TopicPartition("events", 0)
    consumer.seek(tp, batch[tp][0].offset)  # the store failed: read the batch again
    consumer.commit_async(callback=lambda offsets, err: None)
    assert lib.seeks == [("events", 0, 5)]
    assert lib.commits == [([("events", 0, 5)], True)]


def test_a_revoked_partition_is_forgotten_so_its_records_are_not_committed(fake):
    consumer = ConfluentConsumer(SETTINGS, ["events"], "g")
    lib = fake[0]
    lib.queue = messages(0, range(0, 2)) + messages(1, range(0, 2))
    consumer.poll(timeout_ms=100, max_records=10)
    revoked = [confluent_kafka.TopicPartition("events", 1)]
    lib.subscribed["on_revoke"](lib, revoked)
    consumer.commit()
    assert lib.commits == [([("events", 0, 2)], False)]


def test_commit_errors_reach_the_callback(fake):
    consumer = ConfluentConsumer(SETTINGS, ["events"], "g")
    lib = fake[0]
    lib.queue = messages(0, range(0, 1))
    consumer.poll(timeout_ms=100, max_records=10)
    seen: list[Any] = []
    consumer.commit_async(callback=lambda offsets, err: seen.append(err))
    lib.config["on_commit"](confluent_kafka.KafkaError(confluent_kafka.KafkaError._TIMED_OUT), [])
    lib.config["on_commit"](None, [])
    assert isinstance(seen[0], confluent_kafka.KafkaException) and seen[1] is None


def test_the_hub_settings_map_to_librdkafka_properties(fake):
    make_group_consumer(
        SETTINGS, "events", "g", client="confluent-kafka", fetch_max_wait_ms=100, max_partition_fetch_bytes=8
    )
    config = fake[0].config
    assert config["bootstrap.servers"] == "127.0.0.1:9092" and config["group.id"] == "g"
    assert config["fetch.wait.max.ms"] == 100 and config["max.partition.fetch.bytes"] == 8
    assert config["session.timeout.ms"] == 10_000
    with pytest.raises(ConfigError, match="no librdkafka property"):
        ConfluentConsumer(SETTINGS, ["events"], "g", check_crcs=True)
    with pytest.raises(ConfigError, match="unknown Kafka client"):
        make_group_consumer(SETTINGS, "events", "g", client="other")


def test_sasl_over_tls_maps_to_librdkafka_names():
    settings = KafkaSettings(
        bootstrap_servers=("b:9093",), security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
        sasl_username="token", sasl_password="secret", ssl_cafile="/ca.pem",
    )  # fmt: skip
    config = librdkafka_config(settings)
    assert config == {
        "bootstrap.servers": "b:9093", "security.protocol": "sasl_ssl", "sasl.mechanisms": "PLAIN",
        "sasl.username": "token", "sasl.password": "secret", "ssl.ca.location": "/ca.pem",
    }  # fmt: skip
