"""Kafka clients: producer and consumer factories with our defaults, and the consumer that never sits unassigned.

Part of `edgemnist.kafka` (import from there); "cannot reach the broker" surfaces as
:class:`~edgemnist.errors.BrokerUnavailable`, settings that can never work as ConfigError.
"""

from __future__ import annotations

import logging
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

import kafka.errors as kerrors
from kafka.consumer import KafkaConsumer
from kafka.producer import KafkaProducer
from kafka.structs import TopicPartition

from edgemnist.errors import AccessDenied, BrokerUnavailable, ConfigError
from edgemnist.kafka.diagnose import misconfiguration, watch_connections
from edgemnist.kafka.settings import KafkaSettings

__all__ = [
    "PRODUCER_DEFAULTS",
    "CONSUMER_DEFAULTS",
    "require_crc32c",
    "is_unavailable",
    "make_producer",
    "make_consumer",
    "make_group_consumer",
    "SteadyConsumer",
]

log = logging.getLogger("edgemnist.kafka")

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


_DENIED = (kerrors.TopicAuthorizationFailedError, kerrors.GroupAuthorizationFailedError)


def _denied(settings: KafkaSettings, action: str, topic: str, exc: BaseException) -> BaseException:
    """An authorizer's refusal as AccessDenied naming the user, the topic and the permission; else `exc`.

    >>> s = KafkaSettings(bootstrap_servers=("b:9093",), security_protocol="SASL_PLAINTEXT",
    ...                   sasl_mechanism="PLAIN", sasl_username="edge", sasl_password="pw")
    >>> print(_denied(s, "write", "edge-mnist.models", kerrors.TopicAuthorizationFailedError()))
    Kafka user 'edge' may not write topic 'edge-mnist.models' (TopicAuthorizationFailedError): grant it Write and Describe on that topic (docs/security.md, Kafka)
    """
    if not isinstance(exc, _DENIED):
        return exc
    user = settings.sasl_username or "ANONYMOUS"
    name = type(exc).__name__
    if isinstance(exc, kerrors.GroupAuthorizationFailedError):
        text = f"Kafka user {user!r} may not use its consumer group on topic {topic!r} ({name}): grant it Read on that group"
    else:
        need = {"write": "Write and Describe", "read": "Read and Describe"}.get(action, action)
        text = f"Kafka user {user!r} may not {action} topic {topic!r} ({name}): grant it {need} on that topic"
    err = AccessDenied(f"{text} (docs/security.md, Kafka)")
    err.__cause__ = exc
    return err


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
    client: str = "kafka-python",
    **overrides: Any,
) -> Any:
    """A group consumer (see `make_consumer`) that recreates itself if it sits with no partitions.

    `client="confluent-kafka"`: the same interface on librdkafka (`ConfluentConsumer`), which
    learns the topics' partitions before it subscribes and has no join race to recover from.
    """
    if client == "confluent-kafka":
        from edgemnist.kafka.confluent import ConfluentConsumer

        topic_list = [topics] if isinstance(topics, str) else list(topics)
        return ConfluentConsumer(
            settings, topic_list, group_id, session_timeout_ms=session_timeout_ms, **overrides
        )
    if client != "kafka-python":
        raise ConfigError(f"unknown Kafka client {client!r}: use kafka-python or confluent-kafka")

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


def _raise_misconfiguration(settings: KafkaSettings, lines: list[str], exc: BaseException) -> None:
    """A bootstrap that failed for a reason no retry fixes (refused login, TLS port) is a ConfigError."""
    bad = misconfiguration(settings, lines)
    if bad is not None:
        raise bad from exc
