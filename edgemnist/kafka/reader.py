"""Reading a whole topic without a consumer group (the edge's models topic).

Part of `edgemnist.kafka` (import from there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kafka.errors as kerrors
from kafka.consumer import KafkaConsumer
from kafka.structs import TopicPartition

from edgemnist.kafka.clients import _denied, _unavailable, is_unavailable, make_consumer
from edgemnist.kafka.settings import KafkaSettings

__all__ = ["TopicRecord", "TopicReader"]


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """One record as a :class:`TopicReader` hands it out: no kafka-python object escapes."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch, as the broker stamped it (-1 when unknown)
    key: bytes | None
    value: bytes | None


class TopicReader:
    """Every record of one topic from its beginning, with no consumer group and no commits.

    Each edge must see the whole models topic on every start (it is compacted: the
    newest model per audience), so it assigns itself all partitions and seeks to
    the beginning instead of joining a group. The topic may not exist yet:
    :meth:`open` then returns False and is simply called again later; it never
    creates the topic (the hub creates it, compacted, with a fitting size limit).
    """

    def __init__(
        self, settings: KafkaSettings, topic: str, *, max_record_bytes: int = 32 * 2**20, **overrides: Any
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._config = {
            "allow_auto_create_topics": False,
            "max_partition_fetch_bytes": max_record_bytes,
            "fetch_max_bytes": max_record_bytes,
            **overrides,
        }
        self._consumer: KafkaConsumer | None = None
        self._end: dict[Any, int] = {}

    @property
    def topic(self) -> str:
        return self._topic

    def open(self) -> bool:
        """Assign every partition from offset 0; False while the topic does not exist.

        Raises BrokerUnavailable when the broker cannot be reached.
        """
        try:
            if self._consumer is None:
                self._consumer = make_consumer(self._settings, [], None, **self._config)
            partitions = self._consumer.partitions_for_topic(self._topic)
            if not partitions:
                return False
            tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
            self._consumer.assign(tps)
            self._consumer.seek_to_beginning(*tps)
            self._end = dict(self._consumer.end_offsets(tps))
            return True
        except kerrors.KafkaError as exc:
            if is_unavailable(exc):
                raise _unavailable(self._settings, f"reading topic {self._topic!r}", exc) from exc
            denied = _denied(self._settings, "read", self._topic, exc)
            if denied is exc:
                raise
            raise denied from exc

    def poll(self, timeout: float) -> list[TopicRecord]:
        """The next records, in offset order per partition (empty after `timeout` seconds)."""
        if self._consumer is None:
            raise RuntimeError(f"TopicReader of {self._topic!r} is not open")
        try:
            batches = self._consumer.poll(timeout_ms=max(0, int(timeout * 1000)))
        except kerrors.KafkaError as exc:
            if is_unavailable(exc):
                raise _unavailable(self._settings, f"reading topic {self._topic!r}", exc) from exc
            denied = _denied(self._settings, "read", self._topic, exc)
            if denied is exc:
                raise
            raise denied from exc
        return [
            TopicRecord(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)
            for records in batches.values()
            for r in records
        ]

    def caught_up(self) -> bool:
        """True once every record that was on the topic when it was opened has been read."""
        if self._consumer is None:
            return False
        return all(self._consumer.position(tp) >= end for tp, end in self._end.items())

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()
