"""What every part of the hub's store shares: the engine, the write lock, plain executemany inserts.

Part of `metro_app.store` (import `Store` from there). Row ids are the views' sequence numbers:
on PostgreSQL, writers serialise on an advisory lock so that ids become visible in increasing
order and a reader paging by id never skips a row that a slower transaction commits later.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from metro_app.store.engine import make_engine
from metro_app.store.schema import add_missing_columns, metadata, uncertain_images, widen_checks

__all__ = ["StoreBase", "placeholder", "plain_insert"]

_PG_WRITE_LOCK = 0x4D4554524F  # "METRO": one advisory lock for every hub writing to the store


class StoreBase:
    """The engine (tables created on start) and the helpers every write and read goes through."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._reader = threading.local()  # the connection a `reading()` block of this thread shares
        self._insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        metadata.create_all(self.engine)
        add_missing_columns(self.engine)
        widen_checks(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Reads made in this block, by this thread, share one connection.

        A view request reads several things (a page, its count, the fleet's median, the page's
        alerts); one checkout instead of four saves the pool's ping and a connection hand-over
        per read, which is most of a short read's time when the database is busy.
        """
        if getattr(self._reader, "conn", None) is not None:
            yield
            return
        with self.engine.connect() as conn:
            self._reader.conn = conn
            try:
                yield
            finally:
                self._reader.conn = None

    def _connect(self) -> AbstractContextManager[Connection]:
        """A connection to read with: the `reading()` block's, else one from the pool."""
        conn = getattr(self._reader, "conn", None)
        return nullcontext(conn) if conn is not None else self.engine.connect()

    def _begin_write(self, conn: Connection) -> None:
        if self.engine.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_WRITE_LOCK)))

    def _insert_new(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> list[Any]:
        """Insert rows whose msg_id is new; returns (id, msg_id) of the rows added."""
        if not rows:
            return []
        cols = tuple(rows[0])
        return self._insert_tuples(conn, table, cols, [tuple(r[c] for c in cols) for r in rows])

    def _insert_tuples(
        self, conn: Connection, table: sa.Table, cols: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> list[Any]:
        """One plain executemany with conflict-ignore; returns (id, msg_id) tuples of the rows added, ascending.

        ON CONFLICT DO NOTHING skips only rows whose msg_id is stored; any other constraint still
        raises (and the hub splits the batch to find the record). Writers hold the table's write
        lock until the transaction ends (SQLite's database lock; on PostgreSQL the advisory lock
        every writer of these tables takes first), so the rows added are the `rowcount` highest
        ids, read in the same transaction. No SQLAlchemy compile and no RETURNING per batch.
        """
        if not rows:
            return []
        sql, _ = plain_insert(conn, table, cols, rows)
        added = conn.exec_driver_sql(sql + " ON CONFLICT DO NOTHING", rows).rowcount
        if added <= 0:
            return []
        cursor = conn.connection.cursor()  # the same transaction; plain tuples, no Row per id
        try:
            cursor.execute(f'SELECT id, msg_id FROM "{table.name}" ORDER BY id DESC LIMIT {int(added)}')
            return list(cursor.fetchall())[::-1]
        finally:
            cursor.close()

    def _rows(self, query: sa.Select) -> list[Any]:
        with self._connect() as conn:
            return list(conn.execute(query))

    def image(self, msg_id: str) -> Any | None:
        rows = self._rows(sa.select(uncertain_images).where(uncertain_images.c.msg_id == msg_id))
        return rows[0] if rows else None


def placeholder(conn: Connection) -> str:
    """The driver's own parameter marker (`?` for sqlite3, `%s` for psycopg), for SQL sent with exec_driver_sql."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def plain_insert(
    conn: Connection, table: sa.Table, cols: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> tuple[str, Any]:
    """An executemany INSERT in the connection's own parameter style (no SQLAlchemy compile per batch)."""
    mark = placeholder(conn)
    names = ", ".join(f'"{c}"' for c in cols)
    return f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join([mark] * len(cols))})', rows
