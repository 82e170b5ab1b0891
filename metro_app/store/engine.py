"""Engines for the store: SQLite (WAL, busy timeout) or PostgreSQL; other URLs are refused."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from edgemnist.errors import ConfigError
from edgemnist.masking import mask_password

__all__ = ["make_engine"]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA wal_autocheckpoint=8000")  # checkpoint (and fsync) every ~32 MB, not every batch
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for a SQLite path URL or a PostgreSQL URL; other dialects are refused."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"store URL {mask_password(url)!r} is not a database URL") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        kw: dict[str, Any] = {"poolclass": StaticPool} if memory else {"pool_size": 8}
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kw)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        return sa.create_engine(url, pool_size=8, pool_pre_ping=True)
    masked = parsed.render_as_string(hide_password=True)
    raise ConfigError(f"store URL {masked!r}: only sqlite:/// and postgresql+psycopg:// are supported")
