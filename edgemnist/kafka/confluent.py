"""The hub's consumer on librdkafka (`confluent-kafka`), behind the interface the hub uses of kafka-python's.

`HubLoop` calls `poll(timeout_ms, max_records)` (records per partition), `commit()`,
`commit_async(callback)`, `seek`, `assignment`, `end_offsets`, `position` and `close`; this
class answers them with kafka-python's types (`TopicPartition` keys, records with `topic`,
`partition`, `offset`, `key`, `value`), so the hub cannot tell the clients apart. librdkafka
fetches in its own thread and builds the messages in C, which is most of what kafka-python costs
the hub per message.

Delivery is kafka-python's: nothing is committed on its own (`enable.auto.commit` and
`enable.auto.offset.store` are off); `commit` sends the positions this object tracks, the offset
after the last record each `poll` returned, so it commits exactly what the caller has handled;
`seek` moves that position back (a rewound batch is never committed before it is read again);
a partition taken away in a rebalance is forgotten before its records could be committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from kafka.structs import TopicPartition

from edgemnist.errors import BrokerUnavailable, ConfigError
from edgemnist.kafka.settings import KafkaSettings

__all__ = ["ConfluentConsumer", "Record", "librdkafka_config"]

log = logging.getLogger("edgemnist.kafka")

# kafka-python keyword -> librdkafka property, for the settings the hub passes
_KEYS = {
    "auto_offset_reset": "auto.offset.reset",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
}


class Record:
    """One consumed record, read the way the hub reads kafka-python's ConsumerRecord."""

    __slots__ = ("topic", "partition", "offset", "key", "value")

    def __init__(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        self.topic, self.partition, self.offset, self.key, self.value = topic, partition, offset, key, value


def librdkafka_config(settings: KafkaSettings) -> dict[str, Any]:
    """The connection settings (servers, TLS, SASL) as librdkafka properties."""
    kp = settings.to_kafka_config()
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(kp["bootstrap_servers"]),
        "security.protocol": kp["security_protocol"].lower(),
    }
    names = {
        "sasl_mechanism": "sasl.mechanisms", "sasl_plain_username": "sasl.username",
        "sasl_plain_password": "sasl.password", "ssl_cafile": "ssl.ca.location",
        "ssl_certfile": "ssl.certificate.location", "ssl_keyfile": "ssl.key.location",
        "ssl_password": "ssl.key.password",
    }  # fmt: skip
    for key, name in names.items():
        if kp.get(key) is not None:
            config[name] = kp[key]
    return config


class ConfluentConsumer:
    """A manual-commit group consumer on librdkafka with the hub's view of kafka-python's consumer."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        group_id: str,
        *,
        metadata_timeout: float = 30.0,
        **overrides: Any,
    ) -> None:
        from confluent_kafka import Consumer

        config = {
            **librdkafka_config(settings),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "on_commit": self._on_commit,
            **{_KEYS[k]: v for k, v in overrides.items() if k in _KEYS},
        }
        unknown = sorted(set(overrides) - set(_KEYS) - {"enable_auto_commit"})
        if unknown:
            raise ConfigError(f"confluent-kafka consumer: no librdkafka property for {unknown}")
        self._c = Consumer(config)
        self._topics = list(topics)
        self._positions: dict[TopicPartition, int] = {}
        self._callback: Callable[[Any, Any], None] | None = None
        self._await_metadata(metadata_timeout)
        self._c.subscribe(self._topics, on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _await_metadata(self, timeout: float) -> None:
        """Wait until the broker names the topics, so the group's first assignment includes them."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                known = self._c.list_topics(timeout=5).topics
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(f"consumer of {self._topics}: Kafka unreachable: {exc}") from exc
                continue
            if all(t in known and not known[t].error for t in self._topics) or time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for p in partitions:
            self._positions.pop(TopicPartition(p.topic, p.partition), None)

    def _on_commit(self, err: Any, partitions: list[Any]) -> None:
        callback = self._callback
        if callback is not None:
            from confluent_kafka import KafkaException

            callback(partitions, KafkaException(err) if err is not None else None)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Record]]:
        """Up to `max_records` records (waiting up to `timeout_ms` for the first), per partition."""
        msgs = self._c.consume(num_messages=max_records or 500, timeout=timeout_ms / 1000)
        out: dict[TopicPartition, list[Record]] = {}
        last: tuple[str, int] | None = None
        recs: list[Record] = []
        for m in msgs:
            if m.error() is not None:
                log.warning("consumer: %s", m.error())
                continue
            topic, part = m.topic(), m.partition()
            if (topic, part) != last:
                last = (topic, part)
                recs = out.setdefault(TopicPartition(topic, part), [])
            recs.append(Record(topic, part, m.offset(), m.key(), m.value()))
        for tp, rs in out.items():
            self._positions[tp] = rs[-1].offset + 1
        return out

    def _offsets(self) -> list[Any]:
        from confluent_kafka import TopicPartition as CTP

        return [CTP(tp.topic, tp.partition, off) for tp, off in self._positions.items()]

    def commit(self) -> None:
        """Commit the positions after the records handed out, and wait for the broker's answer."""
        offsets = self._offsets()
        if offsets:
            self._c.commit(offsets=offsets, asynchronous=False)

    def commit_async(self, callback: Callable[[Any, Any], None] | None = None) -> None:
        """Send the commit; its answer reaches `callback(offsets, error or None)` during a later poll."""
        offsets = self._offsets()
        if offsets:
            self._callback = callback
            self._c.commit(offsets=offsets, asynchronous=True)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        from confluent_kafka import TopicPartition as CTP

        self._positions[tp] = offset  # first: even if the seek fails, no commit passes the rewound batch
        self._c.seek(CTP(tp.topic, tp.partition, offset))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(p.topic, p.partition) for p in self._c.assignment()}

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        from confluent_kafka import TopicPartition as CTP

        return {tp: self._c.get_watermark_offsets(CTP(tp.topic, tp.partition), timeout=5)[1] for tp in tps}

    def position(self, tp: TopicPartition) -> int:
        if tp in self._positions:
            return self._positions[tp]
        from confluent_kafka import TopicPartition as CTP

        return int(self._c.position([CTP(tp.topic, tp.partition)])[0].offset)

    def committed(self, tp: TopicPartition, timeout_ms: int = 5_000) -> int | None:
        from confluent_kafka import TopicPartition as CTP

        got = self._c.committed([CTP(tp.topic, tp.partition)], timeout=timeout_ms / 1000)[0].offset
        return got if got >= 0 else None

    def close(self, autocommit: bool = False) -> None:
        if autocommit:
            self.commit()
        self._c.close()
