"""Where a hub's microseconds go: per-message time in poll, decode and validate, row build, store, commit.

Our hub (`HubLoop` as `metro-app run` wires it, on each Kafka client) and the bare kafka-python
loop of `bench/hub.py` each consume one pre-filled topic (metrics, then images); each phase is
timed around the real calls (the consumer's poll and commit, `Validator.items`, `Store.write_items`)
and divided by the messages. For our hub, decode and validate (the compiled pass, the PNG check)
and row build are timed once more over the same records, outside the clock, and `Validator.items`'
time is split between them in that proportion; "other" is the loop itself (content hashes,
de-duplication, counting).
Wall time of one process on a shared 2-core machine; run it twice before trusting a digit.

    .venv/bin/python bench/hubprofile.py [--bootstrap-servers HOST:PORT] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

from bench.common import table  # noqa: E402
from bench.hub import SCENARIOS, apache_kafka, fill, kafka_settings  # noqa: E402
from edgemnist.kafka import make_consumer, make_group_consumer, make_producer  # noqa: E402
from edgemnist.wire.fast import WireImage, WireMetrics, fast_decode  # noqa: E402
from edgemnist.wire.messages import FUTURE_TOLERANCE  # noqa: E402
from metro_app.ingest.loop import HUB_CONSUMER_CONFIG, DeadLetterSink, HubLoop  # noqa: E402
from metro_app.ingest.validate import Validator, _check_png  # noqa: E402
from metro_app.store import Store  # noqa: E402
from metro_app.store.items import image_item, metrics_item  # noqa: E402

WHO = {"ours (kafka-python)": "kafka-python", "ours (librdkafka)": "confluent-kafka", "bare loop": "bare"}
PHASES = ("poll", "decode+validate", "row build", "store", "commit", "other")


class _Clock:
    """Seconds spent per phase, added up across calls."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def timed(self, phase: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.spent[phase] += time.perf_counter() - t


class _TimedConsumer:
    def __init__(self, consumer: Any, clock: _Clock) -> None:
        self._c, self._clock = consumer, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._c, name)

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        return self._clock.timed("poll", self._c.poll, *args, **kwargs)

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        return self._clock.timed("commit", self._c.commit, *args, **kwargs)

    def commit_async(self, *args: Any, **kwargs: Any) -> Any:
        return self._clock.timed("commit", self._c.commit_async, *args, **kwargs)


class _TimedStore:
    def __init__(self, store: Store, clock: _Clock) -> None:
        self._s, self._clock = store, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)

    def write_items(self, *args: Any, **kwargs: Any) -> Any:
        return self._clock.timed("store", self._s.write_items, *args, **kwargs)


class _TimedValidator(Validator):
    """`Validator.items` timed in the loop; split into decode+validate and row build in the proportion
    a second pass over the same records (outside the clock) takes for each."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def items(self, records: Sequence[Any]) -> Any:
        t = time.perf_counter()
        latest = datetime.now(UTC) + FUTURE_TOLERANCE
        decoded = []
        for rec in records:
            m = fast_decode(rec.value, latest)
            if m is not None and type(m) is WireImage:
                _check_png(m, rec)  # type: ignore[arg-type]
            decoded.append((m, rec.value))
        t1 = time.perf_counter()
        for m, value in decoded:
            if type(m) is WireMetrics:
                metrics_item(m, value.decode())
            elif m is not None:
                image_item(m)
        t2 = time.perf_counter()
        self._clock.spent["again"] += t2 - t
        self._clock.spent["again decode"] += t1 - t
        return self._clock.timed("validator", super().items, records)


def profile_ours(
    settings: Any, topic: str, total: int, url: str, client: str = "kafka-python"
) -> dict[str, float]:
    """Our hub; the clock starts after the first batch (joining the group is not the hub's work)."""
    clock = _Clock()
    group = f"prof-{time.time_ns()}"
    consumer = make_group_consumer(settings, [topic], group, client=client, **HUB_CONSUMER_CONFIG)
    store = Store(url)
    producer = make_producer(settings)
    timed_store: Any = _TimedStore(store, clock)
    loop = HubLoop(
        _TimedConsumer(consumer, clock), timed_store, DeadLetterSink(producer, "bench.dlq"),
        validator=_TimedValidator(clock),
    )  # fmt: skip
    while not loop.step():
        pass
    first, t0 = loop.stats.records, time.perf_counter()
    clock.spent.clear()
    while loop.stats.records < total:
        loop.step()
    loop.flush_commits()
    wall = time.perf_counter() - t0
    consumer.close(autocommit=False)
    producer.close()
    store.close()
    spent = clock.spent
    again = spent.pop("again")
    share = spent.pop("again decode") / again
    validator = spent.pop("validator")
    spent["decode+validate"], spent["row build"] = validator * share, validator * (1 - share)
    return _per_message(spent, wall - again, loop.stats.records - first)


def profile_bare(settings: Any, topic: str, total: int, url: str) -> dict[str, float]:
    """The bare kafka-python loop of `bench/hub.py` (orjson, executemany, commit), phase by phase."""
    import sqlite3

    clock = _Clock()
    consumer = make_consumer(settings, [topic], f"prof-{time.time_ns()}", **HUB_CONSUMER_CONFIG)
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS msgs (id INTEGER PRIMARY KEY, msg_id TEXT UNIQUE, body TEXT)")
    sql = "INSERT INTO msgs (msg_id, body) VALUES (?, ?) ON CONFLICT DO NOTHING"
    seen, first, t0 = 0, 0, 0.0
    while seen < total:
        batch = clock.timed("poll", consumer.poll, timeout_ms=100, max_records=1000)
        recs = [r for rs in batch.values() for r in rs]
        if not recs:
            continue
        rows = clock.timed("decode+validate", _bare_rows, recs)
        with db:
            clock.timed("store", db.executemany, sql, rows)
        clock.timed("commit", consumer.commit)
        seen += len(rows)
        if not first:
            first, t0 = seen, time.perf_counter()
            clock.spent.clear()
    wall = time.perf_counter() - t0
    consumer.close(autocommit=False)
    db.close()
    return _per_message(clock.spent, wall, seen - first)


def _bare_rows(recs: list[Any]) -> list[tuple[str, str]]:
    return [(orjson.loads(r.value)["id"], r.value.decode()) for r in recs]


def _per_message(spent: dict[str, float], wall: float, n: int) -> dict[str, float]:
    out = {p: spent.get(p, 0.0) / n * 1e6 for p in PHASES if p != "other"}
    out["other"] = max(0.0, wall / n * 1e6 - sum(out.values()))
    out["total"] = wall / n * 1e6
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                   help="an existing Kafka instead of starting Apache Kafka [env: KAFKA_BOOTSTRAP_SERVERS]")  # fmt: skip
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    result: dict[str, Any] = {"bench": "hubprofile", "repeat": args.repeat, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmpdir, apache_kafka(args.bootstrap_servers) as (bootstrap, kind):
        print(f"{kind} on {bootstrap}", flush=True)
        settings = kafka_settings(bootstrap)
        for name, (n_metrics, n_images) in SCENARIOS.items():
            topic = f"prof-{name}-{time.time_ns()}"
            total = fill(settings, topic, n_metrics, n_images).total
            runs: dict[str, list[dict[str, float]]] = {who: [] for who in WHO}
            for r in range(args.repeat):  # interleaved: each repeat runs every contender once
                for who, client in WHO.items():
                    url = f"sqlite:///{tmpdir}/{name}-{client}-{r}.db"
                    if client == "bare":
                        runs[who].append(profile_bare(settings, topic, total, url))
                    else:
                        runs[who].append(profile_ours(settings, topic, total, url, client))
            result[name] = {who: _median(rs) for who, rs in runs.items()}
            rows = [[who, *(v[k] for k in (*PHASES, "total"))] for who, v in result[name].items()]
            print(table([f"{name}: us/message", *PHASES, "total"], rows), flush=True)
    print(json.dumps(result), flush=True)
    return 0


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median total, kept whole so its phases add up to its total."""
    med = sorted(runs, key=lambda r: r["total"])[(len(runs) - 1) // 2]
    return {k: round(v, 1) for k, v in med.items()}


if __name__ == "__main__":
    sys.exit(main())
