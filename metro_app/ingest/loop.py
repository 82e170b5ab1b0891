"""The hub loop: poll a batch, validate, store in one transaction, dead-letter the rest, commit.

Offsets are committed only after the store transaction and the dead letters
are durable, so a crash anywhere re-delivers the batch and the store's
idempotent inserts keep exactly one row per message. The consumer and
producer are handed in (kafka-python objects from `edgemnist.kafka`, or fakes).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from edgemnist import topics
from edgemnist.wire.messages import Origin
from metro_app.ingest.runloop import LoopHealth, rewind, run_forever
from metro_app.ingest.validate import RecordLike, Valid, Validator
from metro_app.store import DeadLetter, Store, WriteResult
from metro_app.store.items import Item

__all__ = ["HUB_CONSUMER_CONFIG", "group_id", "reason_kind", "HubStats", "DeadLetterSink", "HubLoop"]

log = logging.getLogger(__name__)
_DLQ_VALUE_LIMIT = 256_000
# kafka-python's default 1 MB per partition caps a poll at about 300 image messages; 8 MB lets
# one poll fill max_records, so a batch costs one transaction and one commit, not six.
HUB_CONSUMER_CONFIG: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "fetch_max_wait_ms": 100,
    "max_partition_fetch_bytes": 8 * 1024 * 1024,
}


def group_id(topic: str) -> str:
    """The reference's consumer group name for a topic."""
    return f"MetroEdge-{topic}"


def reason_kind(reason: str) -> str:
    """A dead letter's reason as one of a few kinds, for counting (the full text stays in the store).

    >>> reason_kind("edge-mnist.events[0]@7: the store refused it: DataError: out of range")
    'store_refused'
    >>> reason_kind("edge-mnist.events[0]@9: id 'c/r/1' repeats an earlier message with different content")
    'conflict'
    >>> reason_kind("edge-mnist.events[0]@3: not JSON: unexpected character")
    'invalid'
    """
    if "the store refused it" in reason:
        return "store_refused"
    if "with different content" in reason:
        return "conflict"
    if "internal error" in reason:
        return "internal"
    return "invalid"


@dataclass
class HubStats:
    """What one hub instance has done since it started."""

    started: float = field(default_factory=time.time)
    records: int = 0
    metrics_stored: int = 0
    images_stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    store_errors: int = 0
    commit_errors: int = 0
    store_refused: int = 0  # records the database refused, found by splitting their batch
    conflicts: int = 0  # records whose id repeats an earlier message with other content
    store_failing: bool = False  # the last attempt to store failed for a reason no record explains
    lag: int | None = None
    last_batch: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "uptime": time.time() - self.started}


class DeadLetterSink:
    """Send refused records, as they came, to the dead-letter topic with the reason in headers."""

    def __init__(self, producer: Any, topic: str = topics.DLQ, *, timeout: float = 30.0) -> None:
        self._producer = producer
        self.topic = topic
        self.timeout = timeout

    def __call__(self, items: list[tuple[RecordLike, DeadLetter]]) -> None:
        """Send all and wait until the broker has them; raises when it has not."""
        futures = [self._send(rec, dead) for rec, dead in items]
        self._producer.flush(timeout=self.timeout)
        for fut in futures:
            fut.get(timeout=self.timeout)

    def _send(self, rec: RecordLike, dead: DeadLetter) -> Any:
        value = rec.value
        headers = [
            ("reason", dead.reason.encode()[:4000]),
            ("source_topic", dead.topic.encode()),
            ("source_partition", str(dead.partition).encode()),
            ("source_offset", str(dead.offset).encode()),
        ]
        if value is not None and len(value) > _DLQ_VALUE_LIMIT:
            headers.append(("truncated_from", str(len(value)).encode()))
            value = value[:_DLQ_VALUE_LIMIT]
        return self._producer.send(self.topic, value=value, key=rec.key, headers=headers)


class HubLoop:
    """One hub instance's consume -> validate -> store -> dead-letter -> commit loop."""

    def __init__(
        self,
        consumer: Any,
        store: Store,
        dead_letters: DeadLetterSink,
        *,
        validator: Validator | None = None,
        max_records: int = 1000,
        poll_timeout_ms: int = 200,
        retry_seconds: float = 1.0,
        lag_interval: float = 2.0,
        on_stored: Callable[[list[Valid]], None] | None = None,
        async_commits: bool = True,
        on_write: Callable[[float], None] | None = None,
    ) -> None:
        """`on_write(seconds)` learns how long each store transaction of a batch took (Prometheus)."""
        self._consumer = consumer
        self._store = store
        self._dead = dead_letters
        self._validate = validator or Validator()
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.retry_seconds = retry_seconds
        self.lag_interval = lag_interval
        self.stats = HubStats()
        self.health = LoopHealth("hub")
        self._lag_at = 0.0
        self._on_stored = on_stored
        self.async_commits = async_commits
        self._pending_commit = False
        self._on_write = on_write
        self.partition_lag: dict[tuple[str, int], int] = {}  # (topic, partition) -> records behind
        self.dead_reasons: Counter[str] = Counter()  # `reason_kind` -> dead letters sent by this hub

    def step(self) -> int:
        """Handle one polled batch; returns how many records it committed."""
        batch = self._consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
        self._maybe_update_lag()
        records = [r for recs in batch.values() for r in recs]
        if not records:
            return 0
        good, repeats, bad = self._split(records)
        try:
            result, refused = self._store_all(good, repeats, bad)
            bad += refused
            if bad:
                self._dead(bad)
        except Exception:
            log.exception("storing a batch of %d records failed; it will be retried", len(records))
            self.stats.store_errors += 1
            self.stats.store_failing = True
            self._rewind(batch)
            time.sleep(self.retry_seconds)
            return 0
        self.stats.store_failing = False
        self._commit()
        n_stored = len(good) + len(repeats) - len(refused)
        self._count(len(records), n_stored, result.metrics + result.images, bad)
        self.stats.metrics_stored += result.metrics
        self.stats.images_stored += result.images
        if self._on_stored is not None:
            gone = {id(rec) for rec, _ in refused}
            self._on_stored([self._message(rec) for rec, _ in good + repeats if id(rec) not in gone])
        return len(records)

    def _message(self, rec: RecordLike) -> Valid:
        """A stored record as its message dataclass (only `on_stored` wants them; the hot path does not)."""
        msg = self._validate(rec)
        assert not isinstance(msg, DeadLetter)
        return msg

    def _store_all(
        self, good: list[tuple[RecordLike, Item]], repeats: list[tuple[RecordLike, Item]], bad: list[Any]
    ) -> tuple[WriteResult, list[tuple[RecordLike, DeadLetter]]]:
        """Write the batch; a batch the database refuses is split until the refused records are found.

        Returns the totals and the extra dead letters: records the database refused (with its
        reason) and records whose id was stored (or came first in this batch) with other content.
        """
        total, refused = WriteResult(), []  # type: tuple[WriteResult, list[tuple[RecordLike, DeadLetter]]]
        self._write_split(good, [d for _, d in bad], total, refused)
        conflicts = []
        if total.conflicts:
            for rec, it in good:
                if it.id in total.conflicts:
                    conflicts.append(_conflict(rec, it.id, "was stored before"))
        if repeats:
            hashes = {it.id: it.content_hash for _, it in good}
            for rec, it in repeats:
                if it.content_hash != total.conflicts.get(it.id, hashes[it.id]):
                    conflicts.append(_conflict(rec, it.id, "repeats an earlier message"))
        self.stats.conflicts += len(conflicts)
        if conflicts:
            for _, letter in conflicts:
                log.warning("dead letter: %s", letter.reason[:300])
            total.dead_letters += self._store.write_items([], [d for _, d in conflicts]).dead_letters
        return total, refused + conflicts

    def _write_split(
        self,
        items: list[tuple[RecordLike, Item]],
        dead: list[DeadLetter],
        total: WriteResult,
        refused: list[tuple[RecordLike, DeadLetter]],
    ) -> None:
        began = time.perf_counter()
        try:
            r = self._store.write_items([it for _, it in items], dead)
        except Exception as exc:
            if not items or not _refused_by_data(exc):
                raise
            if len(items) > 1:
                mid = len(items) // 2
                self._write_split(items[:mid], dead, total, refused)
                self._write_split(items[mid:], [], total, refused)
                return
            rec, _ = items[0]
            why = f"{_origin(rec)}: the store refused it: {_db_reason(exc)}"
            log.warning("dead letter: %s", why[:300])
            self.stats.store_refused += 1
            letter = DeadLetter(rec.topic, rec.partition, rec.offset, why)
            self._write_split([], [*dead, letter], total, refused)
            refused.append((rec, letter))
            return
        if self._on_write is not None:
            self._on_write(time.perf_counter() - began)
        total.metrics += r.metrics
        total.images += r.images
        total.dead_letters += r.dead_letters
        total.metric_ids += r.metric_ids
        total.conflicts.update(r.conflicts)

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set; one bad record or a failed batch never ends it."""
        run_forever(self.step, stop, self.retry_seconds, "hub loop: a batch", log, health=self.health)
        self.flush_commits()

    def _split(self, records: list[RecordLike]) -> tuple[list[Any], list[Any], list[Any]]:
        """Valid records as store items (the first of each id, then later copies) with their
        content hashes, and (record, dead letter) pairs."""
        good: list[tuple[RecordLike, Item]] = []
        repeats: list[tuple[RecordLike, Item]] = []
        bad: list[tuple[RecordLike, DeadLetter]] = []
        seen: set[str] = set()
        sha256 = hashlib.sha256
        for rec, out in zip(records, self._validate.items(records), strict=True):
            if isinstance(out, DeadLetter):
                log.warning("dead letter: %s", out.reason[:300])
                bad.append((rec, out))
                continue
            out.content_hash = sha256(rec.value or b"").hexdigest()  # type: ignore[union-attr]
            if out.id in seen:  # type: ignore[union-attr]
                repeats.append((rec, out))
                continue
            seen.add(out.id)  # type: ignore[union-attr]
            good.append((rec, out))
        return good, repeats, bad

    def _count(self, n: int, good: int, new: int, bad: list[Any]) -> None:
        s = self.stats
        s.records += n
        s.duplicates += good - new
        s.dead_letters += len(bad)
        self.dead_reasons.update(reason_kind(letter.reason) for _, letter in bad)
        s.batches += 1
        s.last_batch = time.time()

    def _commit(self) -> None:
        """Commit the consumed positions: the batch is in the store, so at-least-once holds.

        With kafka-python the commit is sent without waiting for its answer (it arrives during
        the next poll), so the next fetch does not stall on a round trip; `flush_commits` waits.
        A lost commit only means the batch is delivered again and de-duplicated by the store.
        """
        try:
            if self.async_commits and hasattr(self._consumer, "commit_async"):
                self._consumer.commit_async(callback=self._committed)
                self._pending_commit = True
            else:
                self._consumer.commit()
        except Exception as exc:  # e.g. a rebalance: the batch is re-delivered and de-duplicated
            self.stats.commit_errors += 1
            log.warning("offset commit failed (%s); the batch may be re-delivered", exc)

    def _committed(self, offsets: Any, response: Any) -> None:
        if isinstance(response, Exception):
            self.stats.commit_errors += 1
            log.warning("offset commit failed (%s); the batch may be re-delivered", response)

    def flush_commits(self) -> None:
        """Commit the consumed positions and wait for the answer (on stop, so a restart resumes there)."""
        if not self._pending_commit:
            return
        self._pending_commit = False
        try:
            self._consumer.commit()
        except Exception as exc:
            self.stats.commit_errors += 1
            log.warning("final offset commit failed (%s); the last batch may be re-delivered", exc)

    def _rewind(self, batch: dict[Any, list[RecordLike]]) -> None:
        rewind(self._consumer, batch)

    def _maybe_update_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < self.lag_interval:
            return
        self._lag_at = now
        try:
            tps = list(self._consumer.assignment())
            ends = self._consumer.end_offsets(tps) if tps else {}
            lags = {(tp.topic, tp.partition): max(0, ends[tp] - self._consumer.position(tp)) for tp in tps}
            self.partition_lag = lags
            self.stats.lag = sum(lags.values())
        except Exception as exc:
            log.debug("consumer lag unavailable: %s", exc)


def _conflict(rec: RecordLike, msg_id: str, what: str) -> tuple[RecordLike, DeadLetter]:
    why = f"{_origin(rec)}: id {msg_id!r} {what} with different content; this copy is refused"
    return rec, DeadLetter(rec.topic, rec.partition, rec.offset, why)


def _origin(rec: RecordLike) -> Origin:
    return Origin(rec.topic, rec.partition, rec.offset)


def _refused_by_data(exc: BaseException) -> bool:
    """True when the database refused the data itself (a value out of range, a NUL in text...),
    so the records are to blame; False for a store that is down, locked or full (retry later)."""
    if isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError):
        return True
    if isinstance(exc, sa.exc.StatementError) and not isinstance(exc, sa.exc.DBAPIError):
        exc = exc.orig or exc  # a value the driver could not bind
    return isinstance(exc, OverflowError | ValueError | UnicodeError | TypeError)


def _db_reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines() or [""]
    return f"{type(orig).__name__}: {lines[0][:500]}"
