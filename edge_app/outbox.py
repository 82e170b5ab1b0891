"""A durable local queue (SQLite, WAL) between the pipeline and Kafka.

Every message is written here first and deleted only after Kafka has
acknowledged it (acks=all). When the broker is unreachable the edge keeps
scoring and buffering; when the queue reaches its size bound the oldest
uncertain images are dropped first, never metrics, and the drops are counted
(durably) so the next metrics message can report them. A restarted edge finds
what it had not delivered and sends it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgemnist.errors import ConfigError
from edgemnist.wire.messages import OutboxStats

__all__ = ["Record", "Backlog", "Outbox", "METRICS", "IMAGE", "RESULT"]

log = logging.getLogger(__name__)

METRICS = "metrics"
IMAGE = "image"
RESULT = "result"  # one per scored image, for the results topic; never dropped, like metrics

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT NOT NULL,
    key   BLOB,
    value BLOB NOT NULL,
    size  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('dropped', 0);
"""


@dataclass(frozen=True, slots=True)
class Record:
    """One message waiting for Kafka: its kind decides what may be dropped."""

    kind: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Backlog:
    """What an outbox file holds, as another process sees it: per kind, and which message is oldest."""

    by_kind: Mapping[str, int]
    oldest_seq: int | None  # the oldest pending metrics message, else the oldest of any kind

    @property
    def pending(self) -> int:
        return sum(self.by_kind.values())


class Outbox:
    """The SQLite queue; thread-safe (one connection behind a lock)."""

    @staticmethod
    def backlog(path: Path | str) -> Backlog:
        """Read an outbox file without writing to it, while its edge may be running (healthchecks, tests).

        Metrics are never dropped, so an oldest metrics message that stays the oldest means nothing
        is being delivered. Raises sqlite3.Error when the file is missing or not an outbox.
        """
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            kinds = dict(db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
            seq = db.execute("SELECT MIN(seq) FROM outbox WHERE kind = ?", (METRICS,)).fetchone()[0]
            if seq is None:
                seq = db.execute("SELECT MIN(seq) FROM outbox").fetchone()[0]
            return Backlog({str(k): int(n) for k, n in kinds.items()}, seq)
        finally:
            db.close()

    def __init__(self, path: Path | str, max_bytes: int = 256 * 2**20) -> None:
        if max_bytes <= 0:
            raise ConfigError(f"outbox size bound must be positive, got {max_bytes} bytes")
        self._path = Path(path)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._bytes = 0
        self._pending = 0
        self.not_empty = threading.Event()

    def __enter__(self) -> Outbox:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"outbox {self._path}: cannot open as SQLite ({exc})") from exc
        self._db = db
        self._pending, self._bytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
        ).fetchone()
        if self._pending:
            log.info("outbox %s: %d messages from an earlier run will be resent", self._path, self._pending)
            self.not_empty.set()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"outbox {self._path} is not open")
        return self._db

    def put(self, records: Sequence[Record]) -> None:
        """Store records durably (one transaction), then make room if over the bound."""
        if not records:
            return
        rows = [(r.kind, r.key, r.value, len(r.value)) for r in records]
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO outbox (kind, key, value, size) VALUES (?, ?, ?, ?)", rows)
            self._pending += len(rows)
            self._bytes += sum(r[3] for r in rows)
            if self._bytes > self._max_bytes:
                self._drop_oldest_images()
            db.execute("COMMIT")
        self.not_empty.set()

    def _drop_oldest_images(self) -> None:
        db = self.db
        excess = self._bytes - self._max_bytes
        victims = []
        freed = 0
        for seq, size in db.execute("SELECT seq, size FROM outbox WHERE kind = ? ORDER BY seq", (IMAGE,)):
            if freed >= excess:
                break
            victims.append((seq,))
            freed += size
        if not victims:
            return  # only metrics left: they are kept over the bound, never dropped
        db.executemany("DELETE FROM outbox WHERE seq = ?", victims)
        db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (len(victims),))
        self._pending -= len(victims)
        self._bytes -= freed
        log.warning(
            "outbox %s full (%d bytes bound): dropped the %d oldest uncertain images",
            self._path,
            self._max_bytes,
            len(victims),
        )

    def peek(self, limit: int = 500) -> list[tuple[int, bytes | None, bytes]]:
        """The oldest `limit` records as (seq, key, value), not removed."""
        with self._lock:
            return self.db.execute(
                "SELECT seq, key, value FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()

    def peek_kinds(self, limit: int = 500) -> list[tuple[int, str, bytes | None, bytes]]:
        """The oldest `limit` records as (seq, kind, key, value), not removed: for senders that route by kind."""
        with self._lock:
            return self.db.execute(
                "SELECT seq, kind, key, value FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()

    def pending_of(self, kind: str) -> int:
        """Records of one kind not yet acknowledged."""
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM outbox WHERE kind = ?", (kind,)).fetchone()[0])

    def ack(self, seqs: Sequence[int]) -> None:
        """Kafka has these: delete them."""
        if not seqs:
            return
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            freed = 0
            for chunk in _chunks(list(seqs), 500):
                marks = ",".join("?" * len(chunk))
                freed += db.execute(
                    f"SELECT COALESCE(SUM(size), 0) FROM outbox WHERE seq IN ({marks})", chunk
                ).fetchone()[0]
                gone = db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk).rowcount
                self._pending -= gone
            self._bytes -= freed
            db.execute("COMMIT")
            if self._pending == 0:
                self.not_empty.clear()

    def stats(self) -> OutboxStats:
        with self._lock:
            dropped = self.db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()[0]
            return OutboxStats(pending=self._pending, dropped=dropped)

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def size_bytes(self) -> int:
        return self._bytes


def _chunks(items: list[int], n: int) -> list[list[int]]:
    return [items[i : i + n] for i in range(0, len(items), n)]
