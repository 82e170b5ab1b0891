"""A lease row in the store: one hub of several sharing a store runs a singleton job (the rollout watcher).

The holder renews the lease on every tick; another hub takes it over only once
it has expired (the holder died or stalled). Taking and renewing are single
conditional statements, so two hubs never both hold it: on PostgreSQL the
UPDATE's row lock re-checks the condition for the second writer, SQLite
serialises writers. Expiry uses each hub's wall clock, so the time to live
must be well above the clock skew between hosts (seconds, not milliseconds).

>>> from metro_app.store import Store
>>> store = Store("sqlite://")
>>> a, b = Lease(store.engine, "job", "hub-a", ttl=10), Lease(store.engine, "job", "hub-b", ttl=10)
>>> a.acquire(now=100.0), b.acquire(now=105.0), a.acquire(now=108.0), b.acquire(now=119.0)
(True, False, True, True)
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from metro_app.store.schema import leases

__all__ = ["Lease", "holder_id"]


def holder_id() -> str:
    """This process, as a lease holder: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """Hold the lease `name` for `ttl` seconds at a time, renewing it while alive."""

    def __init__(self, engine: Engine, name: str, holder: str | None = None, *, ttl: float = 15.0) -> None:
        self._engine = engine
        self.name = name
        self.holder = holder or holder_id()
        self.ttl = ttl
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def acquire(self, now: float | None = None) -> bool:
        """Take or renew the lease; False while another holder's lease runs."""
        now = time.time() if now is None else now
        c = leases.c
        with self._engine.begin() as conn:
            taken = conn.execute(
                sa.update(leases)
                .where(c.name == self.name, sa.or_(c.holder == self.holder, c.expires < now))
                .values(holder=self.holder, expires=now + self.ttl)
            ).rowcount
            if taken:
                return True
            stmt = self._insert(leases).values(name=self.name, holder=self.holder, expires=now + self.ttl)
            return bool(conn.execute(stmt.on_conflict_do_nothing()).rowcount)

    def release(self) -> None:
        """Give the lease up now (a clean stop), so another hub need not wait for it to expire."""
        with self._engine.begin() as conn:
            conn.execute(sa.delete(leases).where(leases.c.name == self.name, leases.c.holder == self.holder))

    def holder_now(self) -> str | None:
        """Who holds the lease (expired or not), for /health."""
        with self._engine.connect() as conn:
            return conn.execute(sa.select(leases.c.holder).where(leases.c.name == self.name)).scalar()
