"""The hubs bench/hub.py races: ours, a Quix Streams hub doing the same work, and a minimal loop.

Each runner consumes one pre-filled topic from its start in a fresh consumer group, writes one
SQLite (or PostgreSQL) row per message, commits offsets after the store has them, and returns a
`Run`: messages, wall seconds from the first record on, CPU seconds of this process (librdkafka's
threads included), and the group whose committed offsets the caller verifies.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from edgemnist.kafka import make_consumer, make_producer
from edgemnist.wire.messages import MetricsMessage, parse_message
from metro_app.ingest.loop import HUB_CONSUMER_CONFIG, DeadLetterSink, HubLoop
from metro_app.settings import HubSettings
from metro_app.store import Store
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


def run_ours(settings: Any, topic: str, total: int, url: str, group: str, deadline: float = 300) -> Run:
    """`metro-app run`'s loop as the service wires it (same consumer config, batch size, commits)."""
    consumer = make_consumer(settings, [topic], group, **HUB_CONSUMER_CONFIG)
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


def run_quix(
    bootstrap: str, topic: str, total: int, url: str, group: str, *, png: bool, deadline: float = 300
) -> Run:
    """A Quix Streams app: bytes in, `parse_message` (and a Pillow PNG decode when `png`), a
    BatchingSink writing the same rows with one executemany (conflict-ignore), commit after flush."""
    from quixstreams import Application
    from quixstreams.sinks import BatchingSink, SinkBatch

    store = Store(url)  # the same tables; the sink writes them through its own connection
    engine = store.engine
    state: dict[str, Any] = {"rows": 0, "t0": None, "c0": None}

    def insert_sql(table: Any, cols: list[str]) -> str:
        names = ", ".join(f'"{c}"' for c in cols)
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        return f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join([mark] * len(cols))}) ON CONFLICT DO NOTHING'

    class StoreSink(BatchingSink):
        def write(self, batch: SinkBatch) -> None:
            now = time.time()
            mrows, irows = [], []
            for item in batch:
                msg = item.value
                if isinstance(msg, MetricsMessage):
                    mrows.append(metrics_row(msg, now, msg.to_json().decode()))
                else:
                    irows.append(image_row(msg, now))
            with engine.begin() as conn:
                for table, rows in ((metrics, mrows), (uncertain_images, irows)):
                    if rows:
                        cols = list(rows[0])
                        conn.exec_driver_sql(
                            insert_sql(table, cols), [tuple(r[c] for c in cols) for r in rows]
                        )
            state["rows"] += len(mrows) + len(irows)
            if state["rows"] >= total:
                app.stop()

    def validate(value: bytes) -> Any:
        if state["t0"] is None:
            state["t0"], state["c0"] = time.perf_counter(), time.process_time()
        try:
            msg = parse_message(value)
            if png and not isinstance(msg, MetricsMessage):
                _png_pillow(msg)
            return msg
        except Exception:
            return None  # a real app would dead-letter it; the bench topics hold none

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_interval=1.0,
        use_changelog_topics=False,
        loglevel="WARNING",
        state_dir=Path(url.removeprefix("sqlite:///")).parent / f"quix-{group}",
    )
    sdf = app.dataframe(app.topic(topic, value_deserializer="bytes"))
    sdf = sdf.apply(validate).filter(lambda m: m is not None)
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
