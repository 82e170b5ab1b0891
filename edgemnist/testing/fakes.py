"""Stand-ins for kafka-python's consumer, producer, records and futures, and for a clock.

The loops take their consumer and producer handed in, so unit tests drive them with these
instead of a broker. They copy only what our code calls, with kafka-python's signatures, and
remember what was done to them (commits, seeks, records sent) for the test to check. No
kafka-python import: only `edgemnist.kafka` may import it.
"""

from __future__ import annotations

from collections import defaultdict, namedtuple
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Batch",
    "FakeClock",
    "FakeConsumer",
    "FakeFuture",
    "FakeProducer",
    "Record",
    "RecordMetadata",
    "Sent",
    "TopicPartition",
    "records",
]

TopicPartition = namedtuple("TopicPartition", "topic partition")
"""Like `kafka.TopicPartition`: a hashable (topic, partition)."""

Record = namedtuple("Record", "topic partition offset key value")
"""The fields of `kafka.consumer.fetcher.ConsumerRecord` our code reads."""

RecordMetadata = namedtuple("RecordMetadata", "topic partition offset")
"""What an acknowledged send's future returns, like `kafka.producer.future.RecordMetadata`."""

Batch = Mapping[Any, Sequence[Any]]


def records(
    values: Iterable[bytes | None],
    topic: str = "events",
    partition: int = 0,
    start: int = 0,
    key: bytes | None = b"cam",
) -> list[Record]:
    """Consecutive records of one partition from `start`, all with the same key."""
    return [Record(topic, partition, start + i, key, v) for i, v in enumerate(values)]


class FakeClock:
    """A clock that moves only when the test sets or advances `now` (seconds)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeConsumer:
    """A consumer in a group that hands out fixed batches, one per `poll`, then nothing.

    `batches` are what `poll` returns ({TopicPartition: [Record, ...]}); a test may append more.
    `commits` counts commits, `seeks` keeps (partition, offset) pairs, `events` the order of
    commits for tests that interleave other calls. `assigned=False` is a member the group gave
    no partition: empty `assignment`, though it still subscribes to `topic`.
    """

    def __init__(
        self,
        batches: Iterable[Batch] = (),
        *,
        topic: str = "events",
        assigned: bool = True,
        end_offset: int = 10,
        position: int = 7,
        committed: int | None = None,
    ) -> None:
        self.batches = list(batches)
        self.topic = topic
        self.assigned = assigned
        self.end_offset = end_offset
        self._position = position
        self._committed = committed
        self.commits = 0
        self.seeks: list[tuple[Any, int]] = []
        self.events: list[str] = []
        self.polls = 0
        self.closed = False

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Batch:
        self.polls += 1
        return self.batches.pop(0) if self.batches else {}

    def commit(self) -> None:
        self.commits += 1
        self.events.append("commit")

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(self.topic, 0)} if self.assigned else set()

    def subscription(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def end_offsets(self, tps: Iterable[Any]) -> dict[Any, int]:
        return {tp: self.end_offset for tp in tps}

    def position(self, tp: Any) -> int:
        return self._position

    def committed(self, tp: Any, timeout_ms: int | None = None) -> int | None:
        return self._committed

    def close(self, autocommit: bool = True) -> None:
        self.closed = True


class FakeFuture:
    """A send's future: `get` returns the record's metadata, or raises the send's error."""

    def __init__(self, metadata: RecordMetadata | None = None, error: BaseException | None = None) -> None:
        self.metadata, self.error = metadata, error

    def get(self, timeout: float | None = None) -> RecordMetadata | None:
        if self.error is not None:
            raise self.error
        return self.metadata


@dataclass(frozen=True)
class Sent:
    """One record a `FakeProducer` had acknowledged: what a reader of the topic would get."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)
    partition: int = 0
    offset: int = 0


class FakeProducer:
    """A producer whose topics are the list `sent`; offsets count from `first_offset` per topic.

    `fail=True` leaves every send unacknowledged, `fail_next = n` only the next n; such a send
    is not in `sent` and its future raises `error`.
    """

    def __init__(
        self, *, fail: bool = False, error: BaseException | None = None, first_offset: int = 0
    ) -> None:
        self.sent: list[Sent] = []
        self.fail = fail or error is not None
        self.fail_next = 0
        self.error = error or RuntimeError("broker down: no acknowledgement")
        self._next: dict[str, int] = defaultdict(lambda: first_offset)
        self.flushes = 0

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> FakeFuture:
        if self.fail or self.fail_next:
            self.fail_next = max(0, self.fail_next - 1)
            return FakeFuture(error=self.error)
        offset = self._next[topic]
        self._next[topic] += 1
        part = partition or 0
        self.sent.append(Sent(topic, key, value, dict(headers or []), part, offset))
        return FakeFuture(RecordMetadata(topic, part, offset))

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1

    def close(self, timeout: float | None = None) -> None:
        pass
