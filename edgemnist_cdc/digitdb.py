"""MNIST digits in PostgreSQL: the documented tables, an idempotent loader, and a paced test-row inserter.

Schema (both tables alike)::

    CREATE TABLE mnist_train (
        id     integer  PRIMARY KEY,                   -- position in the data set's split, from 0
        label  smallint NOT NULL CHECK (label BETWEEN 0 AND 9),
        pixels bytea    NOT NULL CHECK (octet_length(pixels) = 784)
                                                       -- 28x28 uint8, row-major, MNIST convention:
                                                       -- background 0, ink up to 255
    );
    ALTER TABLE mnist_train REPLICA IDENTITY FULL;     -- updates and deletes carry the old row

Loading inserts with ``ON CONFLICT (id) DO NOTHING``: running it again adds
nothing and emits no change events, and it never undoes an edit made since.
Needs psycopg 3 (``pip install 'edge-mnist[postgres]'``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from edgemnist.data import Dataset, load_training
from edgemnist.errors import ConfigError

__all__ = [
    "TABLES",
    "connect",
    "drop_slot",
    "ensure_tables",
    "insert_rows",
    "insert_test",
    "load",
    "read_table",
    "plain_url",
]

TABLES = ("mnist_train", "mnist_test")

_DDL = """
CREATE TABLE IF NOT EXISTS {t} (
    id integer PRIMARY KEY,
    label smallint NOT NULL CHECK (label BETWEEN 0 AND 9),
    pixels bytea NOT NULL CHECK (octet_length(pixels) = 784)
);
ALTER TABLE {t} REPLICA IDENTITY FULL;
COMMENT ON TABLE {t} IS 'edge-mnist digits: id, label 0-9, pixels = 28x28 uint8 row-major (784 bytes), ink high';
"""


def plain_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ConfigError(f"--url must be a postgresql:// URL, got scheme {scheme!r}")
    return f"postgresql://{rest}"


@contextmanager
def connect(url: str) -> Iterator[Any]:
    """A psycopg connection (autocommit off); the error names the host, never the password."""
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError("the db commands need psycopg: pip install 'edge-mnist[postgres]'") from exc
    try:
        conn = psycopg.connect(plain_url(url))
    except psycopg.OperationalError as exc:
        host = plain_url(url).split("@")[-1]
        raise ConfigError(f"cannot connect to PostgreSQL at {host}: {str(exc).strip()[:300]}") from exc
    with conn:
        yield conn


def ensure_tables(conn: Any) -> None:
    with conn.cursor() as cur:
        for table in TABLES:
            cur.execute(_DDL.format(t=table))
    conn.commit()


def insert_rows(conn: Any, table: str, ids: np.ndarray, dataset: Dataset) -> int:
    """Insert (id, label, pixels) rows that are not there yet, in one transaction; returns how many were new."""
    if table not in TABLES:
        raise ConfigError(f"table {table!r} is not one of {', '.join(TABLES)}")
    assert dataset.labels is not None
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _digits (id integer, label smallint, pixels bytea) ON COMMIT DELETE ROWS"
        )
        with cur.copy("COPY _digits (id, label, pixels) FROM STDIN") as copy:
            for row_id, label, image in zip(ids, dataset.labels, dataset.images, strict=True):
                copy.write_row((int(row_id), int(label), image.tobytes()))
        cur.execute(
            f"INSERT INTO {table} SELECT id, label, pixels FROM _digits ORDER BY id ON CONFLICT (id) DO NOTHING"
        )
        added = cur.rowcount
    conn.commit()
    return int(added)


def load(
    url: str, data: str = "bundled", *, test_later: bool = False, limit: int | None = None
) -> dict[str, Any]:
    """Create the tables and fill them from ``data``'s training and held-out splits; idempotent.

    Args:
        test_later: leave ``mnist_test`` empty, for `insert_test` to fill while an evaluator runs.
        limit: at most this many rows per table (the first ones of each split).
    """
    train, test = _splits(data, limit)
    with connect(url) as conn:
        ensure_tables(conn)
        added = {"mnist_train": insert_rows(conn, "mnist_train", np.arange(len(train)), train)}
        if not test_later:
            added["mnist_test"] = insert_rows(conn, "mnist_test", np.arange(len(test)), test)
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    return {"data": data, "added": added, "rows": counts}


def _splits(data: str, limit: int | None) -> tuple[Dataset, Dataset]:
    train, test = load_training(data)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        train, test = (
            Dataset(d.name, d.images[:limit], None if d.labels is None else d.labels[:limit])
            for d in (train, test)
        )
    return train, test


def insert_test(
    url: str,
    data: str = "bundled",
    *,
    rate: float = 100.0,
    burst: int = 50,
    limit: int | None = None,
    on_burst: Callable[[int, int], None] | None = None,
) -> int:
    """Insert ``data``'s held-out rows into ``mnist_test`` at ``rate`` rows/s, ``burst`` rows per transaction.

    Rows already there are skipped, so an interrupted run can simply be started again.
    Returns how many rows were new.
    """
    if rate <= 0 or burst < 1:
        raise ConfigError(f"--rate must be > 0 and --burst >= 1, got {rate} and {burst}")
    _, test = _splits(data, limit)
    assert test.labels is not None
    added = 0
    started = time.monotonic()
    with connect(url) as conn:
        ensure_tables(conn)
        for start in range(0, len(test), burst):
            end = min(start + burst, len(test))
            part = Dataset(test.name, test.images[start:end], test.labels[start:end])
            added += insert_rows(conn, "mnist_test", np.arange(start, end), part)
            if on_burst is not None:
                on_burst(end, added)
            pause = started + end / rate - time.monotonic()
            if pause > 0 and end < len(test):
                time.sleep(pause)
    return added


def read_table(url: str, table: str) -> list[dict[str, Any]]:
    """Every row of a digit table, by id: what a trainer reading the table directly sees."""
    if table not in TABLES:
        raise ConfigError(f"table {table!r} is not one of {', '.join(TABLES)}")
    with connect(url) as conn:
        rows = conn.execute(f"SELECT id, label, pixels FROM {table} ORDER BY id").fetchall()
    return [{"id": r[0], "label": r[1], "pixels": bytes(r[2])} for r in rows]


def drop_slot(url: str, slot: str, timeout: float = 60.0) -> dict[str, bool]:
    """Drop a removed connector's replication slot and publication, so PostgreSQL stops keeping WAL.

    The slot stays active for a moment after the connector is deleted (its task closes the
    replication connection): wait up to `timeout` seconds for it to go idle.

    Returns:
        {"slot": dropped?, "publication": dropped?}; False where there was none.

    Raises:
        ConfigError: the slot is still in use after `timeout` (another connector uses it).
    """
    import time

    deadline = time.monotonic() + timeout
    with connect(url) as conn:
        conn.autocommit = True
        while True:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None or not row[0]:
                break
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"replication slot {slot!r} is still in use after {timeout:g} s; not dropped"
                )
            time.sleep(0.5)
        if row is not None:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        publication = f"{slot}_pub"
        had_pub = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
        if had_pub:
            conn.execute(f'DROP PUBLICATION "{publication}"')
    return {"slot": row is not None, "publication": had_pub is not None}
