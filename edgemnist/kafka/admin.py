"""Kafka administration: reachability and access checks, and creating the topics we need.

Part of `edgemnist.kafka` (import from there).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import kafka.errors as kerrors
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition

from edgemnist.errors import ConfigError
from edgemnist.kafka.clients import _raise_misconfiguration, _unavailable, is_unavailable, make_consumer
from edgemnist.kafka.diagnose import reachable, watch_connections
from edgemnist.kafka.settings import KafkaSettings

__all__ = ["check_access", "wait_for_broker", "ensure_topics", "GroupLag"]


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


class GroupLag:
    """A consumer group's progress on a topic, read without joining the group (for benchmarks, ops).

    Calling it returns, per partition, (end offset, the group's committed offset or 0).
    """

    def __init__(self, settings: KafkaSettings, topic: str, group: str, timeout: float = 30.0) -> None:
        self._consumer = make_consumer(settings, [], group)
        self._topic = topic
        deadline = time.monotonic() + timeout
        while not (parts := self._consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise ConfigError(f"topic {topic}: no partitions known after {timeout:.0f} s")
            self._consumer.topics()  # asks the broker for metadata
            time.sleep(0.2)
        self._parts = [TopicPartition(topic, p) for p in sorted(parts)]

    def __call__(self) -> dict[int, tuple[int, int]]:
        ends = self._consumer.end_offsets(self._parts)
        return {tp.partition: (int(ends[tp]), int(self._consumer.committed(tp) or 0)) for tp in self._parts}

    def close(self) -> None:
        self._consumer.close()
