"""The only core module that imports kafka-python: producer, consumer and admin helpers.

Everything else receives an :class:`EventProducer` or a consumer, so it tests without a
broker. "Cannot reach the broker" surfaces as :class:`~edgemnist.errors.BrokerUnavailable`.
"""

from __future__ import annotations

import logging
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import kafka.errors as kerrors
from kafka.admin import KafkaAdminClient
from kafka.consumer import KafkaConsumer
from kafka.producer import KafkaProducer
from kafka.structs import TopicPartition

from edgemnist._diagnose import misconfiguration, reachable, watch_connections
from edgemnist.errors import BrokerUnavailable, ConfigError
from edgemnist.settings import KafkaSettings

__all__ = [
    "require_crc32c",
    "make_producer",
    "make_consumer",
    "make_group_consumer",
    "SteadyConsumer",
    "EventProducer",
    "ensure_topics",
    "wait_for_broker",
    "check_access",
    "is_unavailable",
    "TopicRecord",
    "TopicReader",
]

log = logging.getLogger(__name__)

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 5,
    "batch_size": 128 * 1024,
    "compression_type": None,
    "request_timeout_ms": 15_000,
    "max_block_ms": 10_000,
    "reconnect_backoff_max_ms": 1_000,
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "reconnect_backoff_max_ms": 1_000,
}


def require_crc32c() -> None:
    """Fail fast when kafka-python would checksum records in pure Python (about 10x slower)."""
    from kafka.record import util

    impl = (util.calc_crc32c.__defaults__ or (None,))[0]
    if not isinstance(impl, types.BuiltinFunctionType):
        raise ConfigError(
            "kafka-python's C CRC32C accelerator is not active (kafka.record.util uses the "
            "pure-Python crc32c); install it: pip install 'crc32c>=2.4'"
        )


def _servers(settings: KafkaSettings) -> str:
    return ",".join(settings.bootstrap_servers) or "(none)"


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the broker cannot be reached right now" (retriable)."""
    if isinstance(exc, BrokerUnavailable):
        return True
    return isinstance(exc, kerrors.KafkaError) and (
        exc.retriable or isinstance(exc, kerrors.BrokerNotAvailableError)
    )


def _unavailable(settings: KafkaSettings, what: str, exc: BaseException | None) -> BrokerUnavailable:
    detail = f": {exc}" if exc is not None else ""
    err = BrokerUnavailable(f"{what}: Kafka at {_servers(settings)} unreachable{detail}")
    err.__cause__ = exc
    return err


def make_producer(
    settings: KafkaSettings, *, delivery_timeout_ms: int = 60_000, **overrides: Any
) -> KafkaProducer:
    """A bytes-in producer with acks=all; raises BrokerUnavailable if it cannot bootstrap."""
    require_crc32c()
    config = {**settings.to_kafka_config(), **PRODUCER_DEFAULTS, **overrides}
    config["delivery_timeout_ms"] = delivery_timeout_ms
    if "request_timeout_ms" not in overrides:  # kafka-python wants delivery >= linger + request
        budget = delivery_timeout_ms - config["linger_ms"]
        config["request_timeout_ms"] = max(1_000, min(config["request_timeout_ms"], budget))
    try:
        with watch_connections() as lines:
            return KafkaProducer(**config)
    except kerrors.KafkaError as exc:
        _raise_misconfiguration(settings, lines, exc)
        if is_unavailable(exc):
            raise _unavailable(settings, "creating a producer", exc) from exc
        raise


def make_consumer(
    settings: KafkaSettings,
    topics: str | Sequence[str],
    group_id: str | None,
    *,
    session_timeout_ms: int = 10_000,
    heartbeat_interval_ms: int | None = None,
    metadata_timeout: float = 30.0,
    **overrides: Any,
) -> KafkaConsumer:
    """A manual-commit consumer reading bytes from the earliest offset of new groups.

    A group member learns its topics' partitions (up to `metadata_timeout` seconds) before it
    is returned, so its first poll joins the group knowing them.
    """
    require_crc32c()
    topic_list = [topics] if isinstance(topics, str) else list(topics)
    config = {
        **settings.to_kafka_config(),
        **CONSUMER_DEFAULTS,
        "group_id": group_id,
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": heartbeat_interval_ms or max(100, session_timeout_ms // 3),
        **overrides,
    }
    try:
        with watch_connections() as lines:
            consumer = KafkaConsumer(*topic_list, **config)
    except kerrors.KafkaError as exc:
        _raise_misconfiguration(settings, lines, exc)
        if is_unavailable(exc):
            raise _unavailable(settings, f"creating a consumer of {topic_list}", exc) from exc
        raise
    if group_id is not None:
        _await_metadata(consumer, topic_list, metadata_timeout)
    return consumer


def _await_metadata(consumer: Any, topics: Sequence[str], timeout: float) -> None:
    """Learn the topics' partitions before the first poll joins the group.

    kafka-python 3.0.12 can join a group before its metadata names a topic (created moments
    ago) and then sit with no partitions assigned; asking for them first avoids that race.
    """
    deadline = time.monotonic() + timeout
    for topic in topics:
        while not consumer.partitions_for_topic(topic) and time.monotonic() < deadline:
            time.sleep(0.1)


def make_group_consumer(
    settings: KafkaSettings,
    topics: str | Sequence[str],
    group_id: str,
    *,
    session_timeout_ms: int = 10_000,
    **overrides: Any,
) -> SteadyConsumer:
    """A group consumer (see `make_consumer`) that recreates itself if it sits with no partitions."""

    def factory() -> KafkaConsumer:
        return make_consumer(settings, topics, group_id, session_timeout_ms=session_timeout_ms, **overrides)

    return SteadyConsumer(factory, session_timeout_ms / 1000)


class SteadyConsumer:
    """A consumer-group member that recovers from an empty assignment nobody else explains.

    kafka-python 3.0.12 sometimes never gets its partitions (its first join raced the topic's
    metadata): it polls forever, assigned nothing, and the group's records wait. When the
    assignment has stayed empty past the session timeout and some partition of the topics has
    records past its committed offset that no member committed during a whole session timeout,
    this closes the consumer and makes a new one (a fresh join). A member that is idle because
    others own every partition sees their commits move, and stays. Everything else is delegated.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        session_timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self.session_timeout = session_timeout
        self._clock = clock
        self._consumer: Any = factory()
        self._empty_since: float | None = None
        self._committed: dict[Any, int] | None = None
        self.recreated = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    @property
    def consumer(self) -> Any:
        return self._consumer

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        if self._consumer is None:  # recreating failed (broker away): try again
            self._consumer = self._factory()
        out = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        if out or self._consumer.assignment():
            self._empty_since, self._committed = None, None
            return out
        now = self._clock()
        if self._empty_since is None:
            self._empty_since, self._committed = now, self._safe_waiting()
        elif now - self._empty_since >= self.session_timeout:
            self._check_stuck(now)
        return out

    def _safe_waiting(self) -> dict[Any, int] | None:
        try:
            return self._waiting()
        except Exception as exc:  # the broker is away: nothing to decide now
            log.debug("consumer: cannot read committed offsets: %s", exc)
            return None

    def _check_stuck(self, now: float) -> None:
        before, waiting = self._committed, self._safe_waiting()
        self._empty_since, self._committed = now, waiting  # look again one session timeout later
        if before is None or not waiting:
            return
        stuck = [tp for tp, offset in waiting.items() if before.get(tp) == offset]
        if stuck:
            log.warning(
                "consumer: no partitions assigned for %.0f s while %s wait with no member committing; "
                "recreating the consumer (a fresh group join)", self.session_timeout, stuck,
            )  # fmt: skip
            self.recreate()

    def _waiting(self) -> dict[Any, int]:
        """Partitions with records past their committed offset -> that committed offset."""
        c = self._consumer
        tps = [
            TopicPartition(t, p) for t in sorted(c.subscription() or ()) for p in c.partitions_for_topic(t)
        ]
        ends = c.end_offsets(tps) if tps else {}
        out = {}
        for tp in tps:
            committed = c.committed(tp, timeout_ms=5_000) or 0
            if ends.get(tp, 0) > committed:
                out[tp] = committed
        return out

    def recreate(self) -> None:
        """Close the consumer (no commit: nothing is assigned) and make a new one."""
        old, self._consumer = self._consumer, None
        try:
            old.close(autocommit=False)
        except Exception as exc:
            log.warning("consumer: closing the stuck consumer: %s", exc)
        self._consumer = self._factory()
        self._empty_since, self._committed = None, None
        self.recreated += 1

    def close(self, autocommit: bool = False) -> None:
        self._consumer.close(autocommit=autocommit)


class EventProducer:
    """Send batches of ``(key, value)`` bytes and report, per record, whether Kafka acked it.

    The producer connects lazily, on the first :meth:`send_batch`, so that an edge can start
    (and buffer) while the broker is down. ``send_batch`` never raises for an unreachable
    broker and never blocks much longer than its ``timeout``.
    """

    def __init__(
        self,
        settings: KafkaSettings | None = None,
        *,
        producer: Any = None,
        close_timeout: float = 5.0,
        **overrides: Any,
    ) -> None:
        if (settings is None) == (producer is None):
            raise ValueError("EventProducer needs exactly one of settings or producer")
        self._settings = settings or KafkaSettings()
        self._overrides = overrides
        self._producer = producer
        self._close_timeout = close_timeout

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.close()
        return False

    def open(self, timeout: float = 30.0) -> Any:
        """Connect now (idempotent); raises BrokerUnavailable after ``timeout`` seconds."""
        if self._producer is None:
            config = {"bootstrap_timeout_ms": max(1, int(timeout * 1000)), **self._overrides}
            self._producer = make_producer(self._settings, **config)
        return self._producer

    def send_batch(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]], timeout: float
    ) -> list[BaseException | None]:
        """Send all records, flush, and return one result per record: None = acknowledged.

        A record not acknowledged within ``timeout`` gets a BrokerUnavailable; it may still
        be delivered later by the producer, so callers resend it (at-least-once).
        """
        if not records:
            return []
        deadline = time.monotonic() + timeout
        try:
            producer = self.open(timeout)
        except BrokerUnavailable as exc:
            return [exc] * len(records)
        results: list[BaseException | None] = [None] * len(records)
        futures = self._send_all(producer, topic, records, deadline, results)
        try:
            producer.flush(timeout=max(0.0, deadline - time.monotonic()))
        except kerrors.KafkaTimeoutError:
            pass
        for i, future in enumerate(futures):
            if future is not None:
                results[i] = self._outcome(topic, future, timeout)
        return results

    def _send_all(
        self,
        producer: Any,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes]],
        deadline: float,
        results: list[BaseException | None],
    ) -> list[Any]:
        futures: list[Any] = [None] * len(records)
        with _max_block(producer, deadline):
            for i, (key, value) in enumerate(records):
                try:
                    futures[i] = producer.send(topic, value=value, key=key)
                except kerrors.KafkaError as exc:
                    if not is_unavailable(exc):
                        results[i] = exc
                        continue
                    err = _unavailable(self._settings, f"sending to {topic!r}", exc)
                    results[i:] = [err] * (len(records) - i)
                    break
        return futures

    def _outcome(self, topic: str, future: Any, timeout: float) -> BaseException | None:
        if not future.is_done:
            return _unavailable(self._settings, f"no ack from {topic!r} within {timeout:g} s", None)
        if future.succeeded():
            return None
        exc = future.exception
        if is_unavailable(exc):
            return _unavailable(self._settings, f"sending to {topic!r}", exc)
        return exc

    def close(self) -> None:
        """Close the producer, waiting at most ``close_timeout`` for unsent records."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=self._close_timeout)
        except kerrors.KafkaTimeoutError:
            # kafka-python 3.0 close() raises from its flush with records pending and leaves
            # the sender thread running; abort those records, then close for real.
            log.warning("Kafka producer closed with unsent records (broker unreachable)")
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(self._close_timeout)
            producer.close(timeout=0)


@contextmanager
def _max_block(producer: Any, deadline: float) -> Iterator[None]:
    """Bound send()'s metadata wait by our deadline (kafka-python reads it per call)."""
    config = getattr(producer, "config", None)
    if not isinstance(config, dict) or "max_block_ms" not in config:
        yield
        return
    saved = config["max_block_ms"]
    config["max_block_ms"] = max(1, min(saved, int((deadline - time.monotonic()) * 1000)))
    try:
        yield
    finally:
        config["max_block_ms"] = saved


def _raise_misconfiguration(settings: KafkaSettings, lines: list[str], exc: BaseException) -> None:
    """A bootstrap that failed for a reason no retry fixes (refused login, TLS port) is a ConfigError."""
    bad = misconfiguration(settings, lines)
    if bad is not None:
        raise bad from exc


def _admin(settings: KafkaSettings, timeout: float) -> KafkaAdminClient:
    config = {**settings.to_kafka_config(), "bootstrap_timeout_ms": max(1, int(timeout * 1000))}
    try:
        with watch_connections() as lines:
            return KafkaAdminClient(**config)
    except kerrors.KafkaError as exc:
        _raise_misconfiguration(settings, lines, exc)
        raise


def check_access(settings: KafkaSettings, timeout: float = 10.0) -> None:
    """Fail fast on settings that can never work (a refused login, plaintext to a TLS port).

    Returns quietly when the cluster answers, and also when no broker is reachable at all:
    an edge must start and buffer while Kafka is down. Raises ConfigError naming the broker.
    """
    if not reachable(settings):
        return
    try:
        admin = _admin(settings, timeout)
    except kerrors.KafkaError as exc:
        if is_unavailable(exc):
            return
        raise
    admin.close()


def wait_for_broker(settings: KafkaSettings, timeout: float) -> None:
    """Block until the cluster answers a metadata request naming at least one broker."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            # at most 10 s per attempt, so a refused login is reported (ConfigError) within seconds
            admin = _admin(settings, min(10.0, max(0.5, deadline - time.monotonic())))
            try:
                if admin.describe_cluster().get("brokers"):
                    return
            finally:
                admin.close()
        except kerrors.KafkaError as exc:
            if not is_unavailable(exc):
                raise
            last = exc
        time.sleep(0.2)
    raise _unavailable(settings, f"waited {timeout:g} s for the broker", last)


def ensure_topics(
    settings: KafkaSettings,
    topics: Mapping[str, int],
    replication_factor: int = -1,
    timeout: float = 30,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the missing topics with the given partition counts; return the names created.

    ``replication_factor`` -1 is the broker's ``default.replication.factor``: 1 on a single
    broker, 3 on a three-broker cluster configured for it, so topics the hub creates survive
    the loss of a broker where the cluster is built for that.

    Idempotent: existing topics are left as they are (their configs too). Retries while the
    broker is still starting; raises BrokerUnavailable naming the bootstrap servers after
    ``timeout``. ``configs`` maps a topic to its topic-level configs, e.g. the models topic's
    ``{"cleanup.policy": "compact", "max.message.bytes": "..."}``.
    """
    if not topics:
        return []
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            return _create_topics(settings, topics, replication_factor, deadline, configs or {})
        except kerrors.KafkaError as exc:
            if not is_unavailable(exc):
                raise
            last = exc
        if time.monotonic() >= deadline:
            raise _unavailable(settings, f"creating topics {sorted(topics)}", last)
        time.sleep(0.2)


def _create_topics(
    settings: KafkaSettings,
    topics: Mapping[str, int],
    replication_factor: int,
    deadline: float,
    configs: Mapping[str, Mapping[str, str]],
) -> list[str]:
    admin = _admin(settings, max(0.5, deadline - time.monotonic()))
    try:
        request: dict[str, dict[str, Any]] = {
            name: {"num_partitions": n, "replication_factor": replication_factor}
            for name, n in topics.items()
        }
        for name, config in configs.items():
            if name in request and config:
                request[name]["configs"] = {k: str(v) for k, v in config.items()}
        response = admin.create_topics(request, raise_errors=False)
        created = []
        for item in response["topics"]:
            error = kerrors.for_code(item["error_code"])
            if error is kerrors.NoError:
                created.append(item["name"])
            elif error is not kerrors.TopicAlreadyExistsError:
                _raise_topic_error(item, error)
        remaining_ms = max(1000, int((deadline - time.monotonic()) * 1000))
        admin.wait_for_topics(list(topics), timeout_ms=remaining_ms)
        return created
    finally:
        admin.close()


def _raise_topic_error(item: Mapping[str, Any], error: type[kerrors.KafkaError]) -> None:
    message = item.get("error_message") or ""
    exc = error(f"topic {item['name']!r}: {message}")
    if is_unavailable(exc):
        raise exc
    raise ConfigError(f"cannot create topic {item['name']!r}: {error.__name__} {message}") from exc


# ----- reading a whole topic without a consumer group (the edge's models topic) -------------------


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
            raise

    def poll(self, timeout: float) -> list[TopicRecord]:
        """The next records, in offset order per partition (empty after `timeout` seconds)."""
        if self._consumer is None:
            raise RuntimeError(f"TopicReader of {self._topic!r} is not open")
        try:
            batches = self._consumer.poll(timeout_ms=max(0, int(timeout * 1000)))
        except kerrors.KafkaError as exc:
            if is_unavailable(exc):
                raise _unavailable(self._settings, f"reading topic {self._topic!r}", exc) from exc
            raise
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
