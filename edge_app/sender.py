"""Drains the outbox to Kafka in a background thread; deletes only what Kafka acknowledged."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from edge_app.outbox import Outbox
from edgemnist.errors import AccessDenied, EdgeMnistError

__all__ = ["Producer", "Sender"]

log = logging.getLogger(__name__)


class Producer(Protocol):
    def send_batch(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]], timeout: float
    ) -> list[BaseException | None]: ...

    def close(self) -> None: ...


class Sender:
    """Sends the oldest outbox records in batches; backs off while the broker is away.

    The producer is made lazily by `producer_factory`, so an edge that starts
    while the broker is down keeps scoring and buffering until it comes back.
    Records whose kind is in `topics` go to that topic instead of `topic` (the
    per-image results); `acked` and `failed` count sends per kind.
    """

    def __init__(
        self,
        outbox: Outbox,
        topic: str,
        producer_factory: Callable[[], Producer],
        batch: int = 500,
        send_timeout: float = 10.0,
        max_backoff: float = 5.0,
        linger: float = 0.05,
        topics: Mapping[str, str] | None = None,
    ) -> None:
        self._outbox = outbox
        self._topic = topic
        self._topics = dict(topics or {})
        self.acked: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._factory = producer_factory
        self._batch = batch
        self._send_timeout = send_timeout
        self._max_backoff = max_backoff
        self._linger = linger
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)
        self.failures = 0
        self.connected = False
        self._denied_said = ""  # the last AccessDenied logged, so it is said once

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._outbox.not_empty.set()
        self._thread.join(timeout=self._send_timeout + 5)
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def drain(self, timeout: float) -> bool:
        """Wait until everything in the outbox is acknowledged; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while self._outbox.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._outbox.pending == 0

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            self._outbox.not_empty.wait(0.2)
            if self._stop.is_set():
                break
            if self._outbox.pending < self._batch:
                self._stop.wait(self._linger)  # one Kafka round trip per ~linger, not per micro-batch
            ok = self._send_once()
            if ok:
                backoff = 0.1
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _send_once(self) -> bool:
        rows = self._outbox.peek_kinds(self._batch)
        if not rows:
            return True
        producer = self._connect()
        if producer is None:
            return False
        by_topic: dict[str, list[tuple[int, str, bytes | None, bytes]]] = {}
        for row in rows:
            by_topic.setdefault(self._topics.get(row[1], self._topic), []).append(row)
        acked: list[int] = []
        first: BaseException | None = None
        for topic, group in by_topic.items():
            results = producer.send_batch(topic, [(k, v) for _, _, k, v in group], self._send_timeout)
            for (seq, kind, _, _), err in zip(group, results, strict=True):
                if err is None:
                    acked.append(seq)
                    self.acked[kind] += 1
                else:
                    self.failed[kind] += 1
                    first = first or err
        self._outbox.ack(acked)
        failed = len(rows) - len(acked)
        if failed:
            self.failures += failed
            if isinstance(first, AccessDenied):  # no retry will help until someone grants it: say so once
                if str(first) != self._denied_said:
                    log.error("%s; %d message(s) stay in the outbox", first, failed)
                    self._denied_said = str(first)
            elif self.connected:
                log.warning(
                    "Kafka did not acknowledge %d of %d messages (%s); they stay in the outbox",
                    failed,
                    len(rows),
                    first,
                )
            self.connected = False
            return False
        if not self.connected:
            log.info("sending to Kafka topic %s (%d pending)", self._topic, self._outbox.pending)
        self.connected = True
        return True

    def _connect(self) -> Producer | None:
        if self._producer is None:
            try:
                self._producer = self._factory()
            except EdgeMnistError as exc:
                if self.connected or self.failures == 0:
                    log.warning("Kafka unreachable (%s); buffering in the outbox", exc)
                self.connected = False
                self.failures += 1
        return self._producer
