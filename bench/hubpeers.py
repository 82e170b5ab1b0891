"""The hubs bench/hub.py races: ours, a Quix Streams hub doing the same work, and a minimal loop.

Each runner consumes one pre-filled topic from its start in a fresh consumer group, writes one
SQLite (or PostgreSQL) row per message, commits offsets after the store has them, and returns a
`Run`: messages, wall seconds from the first record on, CPU seconds of this process (librdkafka's
threads included), and the group whose committed offsets the caller verifies.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from edgemnist.kafka import make_consumer, make_group_consumer, make_producer
from edgemnist.wire.messages import MetricsMessage, parse_message
from metro_app.ingest.loop import HUB_CONSUMER_CONFIG, DeadLetterSink, HubLoop
from metro_app.ingest.validate import Validator
from metro_app.settings import HubSettings
from metro_app.store import DeadLetter, Store
from metro_app.store.rows import image_row, metrics_row
from metro_app.store.schema import metrics, uncertain_images

__all__ = ["Run", "run_ours", "run_quix", "run_minimal", "stored_ids"]


@dataclass(frozen=True, slots=True)
class Run:
    messages: int
    wall: float
    cpu: float
    group: str

    @property
    def rate(self) -> float:
        return self.messages / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu / self.messages * 1000


def run_ours(
    settings: Any,
    topic: str,
    total: int,
    url: str,
    group: str,
    deadline: float = 300,
    client: str = "kafka-python",
) -> Run:
    """`metro-app run`'s loop as the service wires it (same consumer config, batch size, commits)."""
    consumer = make_group_consumer(settings, [topic], group, client=client, **HUB_CONSUMER_CONFIG)
    store = Store(url)
    producer = make_producer(settings)
    loop = HubLoop(
        consumer, store, DeadLetterSink(producer, "bench.dlq"), max_records=HubSettings().max_records
    )
    t0 = c0 = None
    end = time.monotonic() + deadline
    while loop.stats.records < total and time.monotonic() < end:
        wall, cpu = time.perf_counter(), time.process_time()
        if loop.step() and t0 is None:
            t0, c0 = wall, cpu  # from the first batch on: joining the group is not the hub's work
    loop.flush_commits()
    run = Run(loop.stats.records, time.perf_counter() - (t0 or 0), time.process_time() - (c0 or 0), group)
    consumer.close(autocommit=False)
    producer.close()
    store.close()
    return run


def _png_pillow(msg: Any) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(msg.image_bytes()), formats=["PNG"]) as img:
        img.load()


@dataclass(slots=True)
class _Record:
    """What `Validator` reads of a record, built from Quix's message context."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _fast_check(validator: Validator) -> Callable[[bytes, Any, Any, Any], Any]:
    """The honest peer's per-message step: our hub's validation, one record at a time.

    `Validator.items` runs the compiled msgspec pass (and the PNG check: chunk CRCs, bounded
    inflate) and falls back to the key-by-key checks for anything it refuses, so what is refused
    is what our hub refuses; the result is the same store row, with the same content hash.
    """
    from quixstreams import message_context

    sha256 = hashlib.sha256

    def check(value: bytes, key: Any, timestamp: Any, headers: Any) -> Any:
        ctx = message_context()
        rec = _Record(ctx.topic, ctx.partition, ctx.offset, key, value)
        out = validator.items([rec])[0]
        if not isinstance(out, DeadLetter):
            out.content_hash = sha256(value).hexdigest()
        return out

    return check


def _slow_check(png: bool) -> Callable[[bytes], Any]:
    """The slow extra: `parse_message` builds the dataclasses (and a Pillow PNG decode when `png`)."""

    def check(value: bytes) -> Any:
        try:
            msg = parse_message(value)
            if png and not isinstance(msg, MetricsMessage):
                _png_pillow(msg)
            return msg
        except Exception:
            return None  # the bench topics hold no bad records

    return check


def _slow_rows(store: Store, msgs: list[Any]) -> int:
    """The slow extra's write: row dicts (metrics re-encoded to JSON), one conflict-ignore executemany."""
    engine, now = store.engine, time.time()
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    mrows = [metrics_row(m, now, m.to_json().decode()) for m in msgs if isinstance(m, MetricsMessage)]
    irows = [image_row(m, now) for m in msgs if not isinstance(m, MetricsMessage)]
    with engine.begin() as conn:
        for table, rows in ((metrics, mrows), (uncertain_images, irows)):
            if rows:
                cols = list(rows[0])
                names = ", ".join(f'"{c}"' for c in cols)
                sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join([mark] * len(cols))}) '
                conn.exec_driver_sql(
                    sql + "ON CONFLICT DO NOTHING", [tuple(r[c] for c in cols) for r in rows]
                )
    return len(msgs)


def run_quix(
    bootstrap: str, topic: str, total: int, url: str, group: str, *, fast: bool = True, deadline: float = 300
) -> Run:
    """A Quix Streams app: bytes in, a check per message, a BatchingSink storing each batch, commit
    after the flush (at each checkpoint: every 1,000 records, as our hub, or every second).

    `fast` (the honest peer): our hub's validation per message and `Store.write_items`, the same
    rows, per-camera counts, content hashes and dead-letter rows our hub writes. Otherwise the
    slow extra: `parse_message`, metrics re-encoded, a Pillow PNG decode for images.
    """
    from quixstreams import Application
    from quixstreams.sinks import BatchingSink, SinkBatch

    store = Store(url)
    state: dict[str, Any] = {"rows": 0, "t0": None, "c0": None}
    check = _fast_check(Validator()) if fast else _slow_check(png=True)

    class StoreSink(BatchingSink):
        def write(self, batch: SinkBatch) -> None:
            values = [item.value for item in batch]
            if fast:
                items = [v for v in values if not isinstance(v, DeadLetter)]
                store.write_items(items, [v for v in values if isinstance(v, DeadLetter)])
                state["rows"] += len(values)
            else:
                state["rows"] += _slow_rows(store, [v for v in values if v is not None])
            if state["rows"] >= total:
                app.stop()

    def timed(value: bytes, *meta: Any) -> Any:
        if state["t0"] is None:
            state["t0"], state["c0"] = time.perf_counter(), time.process_time()
        return check(value, *meta)

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_interval=1.0,
        commit_every=HubSettings().max_records,  # a checkpoint per 1,000 records, as our hub commits
        use_changelog_topics=False,
        loglevel="WARNING",
        state_dir=Path(url.removeprefix("sqlite:///")).parent / f"quix-{group}",
    )
    sdf = app.dataframe(app.topic(topic, value_deserializer="bytes"))
    sdf = sdf.apply(timed, metadata=True) if fast else sdf.apply(timed)
    sdf = sdf.filter(lambda m: m is not None)
    sdf.sink(StoreSink())
    app.run(timeout=deadline) if _has_timeout(app) else app.run()
    run = Run(state["rows"], time.perf_counter() - state["t0"], time.process_time() - state["c0"], group)
    store.close()
    return run


def _has_timeout(app: Any) -> bool:
    import inspect

    return "timeout" in inspect.signature(app.run).parameters


def run_minimal(settings: Any, topic: str, total: int, url: str, group: str, deadline: float = 300) -> Run:
    """The ceiling: kafka-python, orjson, one executemany with conflict-ignore per poll, commit. No checks."""
    import sqlite3

    consumer = make_consumer(settings, [topic], group, **HUB_CONSUMER_CONFIG)
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS msgs (id INTEGER PRIMARY KEY, msg_id TEXT UNIQUE, body TEXT)")
    seen, t0, c0 = 0, None, None
    end = time.monotonic() + deadline
    while seen < total and time.monotonic() < end:
        wall, cpu = time.perf_counter(), time.process_time()
        batch = consumer.poll(timeout_ms=100, max_records=HubSettings().max_records)
        rows = [(orjson.loads(r.value)["id"], r.value.decode()) for recs in batch.values() for r in recs]
        if not rows:
            continue
        t0, c0 = t0 or wall, c0 or cpu
        with db:
            db.executemany("INSERT INTO msgs (msg_id, body) VALUES (?, ?) ON CONFLICT DO NOTHING", rows)
        consumer.commit()
        seen += len(rows)
    run = Run(seen, time.perf_counter() - (t0 or 0), time.process_time() - (c0 or 0), group)
    consumer.close(autocommit=False)
    db.close()
    return run


def stored_ids(url: str) -> tuple[int, int]:
    """(rows, distinct message ids) in whichever tables a runner wrote."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        if "msgs" in names:
            q = "SELECT count(*), count(DISTINCT msg_id) FROM msgs"
        else:
            q = ("SELECT count(*), count(DISTINCT msg_id) FROM (SELECT msg_id FROM metrics_windows "
                 "UNION ALL SELECT msg_id FROM uncertain_images) AS t")  # fmt: skip
        rows, distinct = conn.exec_driver_sql(q).one()
    engine.dispose()
    return int(rows), int(distinct)
