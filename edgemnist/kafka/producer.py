"""`EventProducer`: batches of records sent with a per-record acked/failed answer, never blocking past its timeout.

Part of `edgemnist.kafka` (import from there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import kafka.errors as kerrors

from edgemnist.errors import BrokerUnavailable
from edgemnist.kafka.clients import _DENIED, _denied, _unavailable, is_unavailable, make_producer
from edgemnist.kafka.settings import KafkaSettings

__all__ = ["EventProducer"]

log = logging.getLogger("edgemnist.kafka")


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
                    future = futures[i] = producer.send(topic, value=value, key=key)
                    if future.is_done and isinstance(future.exception, _DENIED):
                        raise future.exception  # refused for the topic: so is every record after it
                except kerrors.KafkaError as exc:
                    if isinstance(exc, _DENIED):
                        futures[i] = None
                        results[i:] = [_denied(self._settings, "write", topic, exc)] * (len(records) - i)
                        break
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
        return _denied(self._settings, "write", topic, exc)

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
