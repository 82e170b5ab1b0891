"""Hub throughput against the hub a user would write instead, in one run, on two brokers.

Per scenario (metrics-only, images-only; one pre-filled single-partition topic each), interleaved
and repeated (median of --repeat): ours (`HubLoop` as `metro-app run` wires it: full validation,
the exactly-once SQLite store, dead letters, commit after the store), on kafka-python (`ours`,
the default) and on librdkafka (`ours_rdk`, `--kafka-client confluent-kafka`); the honest peer, a Quix
Streams app running our hub's validation per message (`Validator.items`: the compiled msgspec
pass and the PNG check) and writing the same rows with `Store.write_items` from its BatchingSink,
committing after the flush; a bare kafka-python + orjson + executemany loop with no checks as a
ceiling; and, as a labelled extra, the slow Quix app (`parse_message` dataclasses, metrics
re-encoded, a Pillow PNG decode). Every run is verified: rows = distinct ids = messages, committed
offset = end offset. On real Apache Kafka (started as the test fixture starts it) and on the embedded Tansu
broker. Then PostgreSQL: one instance, and two instances (processes) in one group on a topic with
two partitions. Send-to-view latency p50/p99 through a real `metro-app run`. One process per
hub; the machine is shared, so compare the ratios. Last line: JSON.

    .venv/bin/python bench/hub.py [--repeat 3] [--bootstrap-servers HOST:PORT] [--skip-tansu]
        [--skip-postgres] [--skip-latency] [--scenarios metrics,images]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table  # noqa: E402
from bench.hubpeers import Run, run_minimal, run_ours, run_quix, stored_ids  # noqa: E402
from edgemnist.kafka import ensure_topics, make_consumer, make_producer  # noqa: E402
from metro_app.samples import make_image, make_metrics  # noqa: E402
from metro_app.store import Store  # noqa: E402
from metro_app.testing import HubProcess  # noqa: E402

SCENARIOS = {"metrics": (20_000, 0), "images": (0, 8_000)}
RUNNERS = ("ours", "ours_rdk", "quix", "minimal", "quix_slow")
# ours = kafka-python (the default client), ours_rdk = --kafka-client confluent-kafka; quix = the honest peer
RATIOS = (
    ("ours", "quix"),
    ("ours_rdk", "quix"),
    ("ours_rdk", "ours"),
    ("ours", "minimal"),
    ("ours", "quix_slow"),
)


@dataclass(frozen=True, slots=True)
class Fill:
    """What a topic holds: messages, and each partition's end offset as the producer was told."""

    total: int
    ends: dict[int, int]


@contextlib.contextmanager
def apache_kafka(bootstrap: str | None) -> Iterator[tuple[str, str]]:
    if bootstrap:
        yield bootstrap, f"Kafka at {bootstrap}"
        return
    from edgemnist.testing.brokers import ApacheKafka

    kafka = ApacheKafka().start()
    try:
        yield kafka.bootstrap_servers, kafka.kind
    finally:
        kafka.close()


@contextlib.contextmanager
def tansu() -> Iterator[tuple[str, str]]:
    from edgemnist_demo.broker import LocalBroker

    with LocalBroker() as local:
        yield local.bootstrap_servers, "Tansu (embedded)"


def kafka_settings(bootstrap: str) -> Any:
    from edgemnist.kafka.settings import resolve

    return resolve(bootstrap_servers=bootstrap)


def fill(settings: Any, topic: str, n_metrics: int, n_images: int, partitions: int = 1) -> Fill:
    """Produce the scenario's messages once (templates re-used with fresh ids, so building is cheap).

    The end offsets come from the producer's acknowledgements: Tansu's ListOffsets answers the
    last batch's base offset, not the end of the log.
    """
    ensure_topics(settings, {topic: partitions})
    m = make_metrics("BenchCam", 0).to_dict()
    i = make_image("BenchCam", 0).to_dict()
    producer = make_producer(settings)
    total = n_metrics + n_images
    futures = []
    for k in range(total):
        body = {**(m if n_metrics else i), "id": f"BenchCam/{topic}/{k}"}
        futures.append(
            producer.send(topic, value=json.dumps(body).encode(), key=f"BenchCam{k % 16}".encode())
        )
    producer.flush()
    ends: dict[int, int] = {}
    for fut in futures:
        meta = fut.get(timeout=60)
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    producer.close()
    return Fill(total, ends)


def verify(settings: Any, topic: str, run: Run, fill: Fill, url: str) -> None:
    """One row per message and the group's committed offsets at the end of every partition."""
    from kafka.structs import TopicPartition

    rows, distinct = stored_ids(url)
    consumer = make_consumer(settings, [], run.group)
    try:
        deadline = time.monotonic() + 30
        while True:
            committed = {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in fill.ends}
            if committed == fill.ends or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        consumer.close(autocommit=False)
    if not (run.messages == rows == distinct == fill.total) or committed != fill.ends:
        raise SystemExit(
            f"run {run.group} failed verification: {run.messages} handled, {rows} rows, {distinct} ids, "
            f"{fill.total} messages; committed {committed} vs end {fill.ends}"
        )


def race(
    bootstrap: str, tmp: Path, repeat: int, label: str, scenarios: tuple[str, ...] = tuple(SCENARIOS)
) -> dict[str, dict[str, Any]]:
    """Every runner on every scenario, interleaved; the median run of each with its CPU per 1,000."""
    settings = kafka_settings(bootstrap)
    out: dict[str, dict[str, Any]] = {}
    for name in scenarios:
        n_metrics, n_images = SCENARIOS[name]
        topic = f"bench-{name}-{time.time_ns()}"
        filled = fill(settings, topic, n_metrics, n_images)
        total = filled.total
        runners: dict[str, Callable[[str, str], Run]] = {
            "ours": lambda url, g, topic=topic, total=total: run_ours(settings, topic, total, url, g),
            "ours_rdk": lambda url, g, topic=topic, total=total: run_ours(
                settings, topic, total, url, g, client="confluent-kafka"
            ),
            "quix": lambda url, g, topic=topic, total=total: run_quix(bootstrap, topic, total, url, g),
            "minimal": lambda url, g, topic=topic, total=total: run_minimal(settings, topic, total, url, g),
            "quix_slow": lambda url, g, topic=topic, total=total: run_quix(
                bootstrap, topic, total, url, g, fast=False
            ),
        }
        runs: dict[str, list[Run]] = {k: [] for k in runners}
        for r in range(repeat):
            for who, runner in runners.items():
                url = f"sqlite:///{tmp}/{label}-{name}-{who}-{r}.db"
                run = runner(url, f"bench-{who}-{time.time_ns()}")
                verify(settings, topic, run, filled, url)
                runs[who].append(run)
                print(f"  {label} {name} {who} #{r + 1}: {run.rate:,.0f} msg/s, "
                      f"{run.cpu_per_1000:.3f} CPU-s/1000 (verified)", flush=True)  # fmt: skip
        res: dict[str, Any] = {}
        for who, rs in runs.items():
            med = sorted(rs, key=lambda x: x.rate)[(len(rs) - 1) // 2]
            res[who] = {"msgs_per_s": round(med.rate), "cpu_s_per_1000": round(med.cpu_per_1000, 4),
                        "runs": [round(x.rate) for x in rs]}  # fmt: skip
        for ours, other in RATIOS:
            res[f"{ours}/{other}"] = round(res[ours]["msgs_per_s"] / res[other]["msgs_per_s"], 2)
        res["messages"] = total
        out[name] = res
    return out


def _instance(bootstrap: str, topic: str, total: int, url: str, group: str, q: Any, go: Any) -> None:
    """One hub process of the two-instance run.

    It joins the group and waits until the group has split the partitions (one each) and the
    parent says go; then it rewinds (nothing was committed) and consumes until the shared store
    holds every message, so the clock runs only while both instances work.
    """
    from metro_app.ingest.loop import HUB_CONSUMER_CONFIG, DeadLetterSink, HubLoop
    from metro_app.store import Store

    settings = kafka_settings(bootstrap)
    consumer = make_consumer(settings, [topic], group, **HUB_CONSUMER_CONFIG)
    store = Store(url)
    producer = make_producer(settings)
    loop = HubLoop(consumer, store, DeadLetterSink(producer, "bench.dlq"))
    ready = False
    while not go.is_set():
        consumer.poll(timeout_ms=100, max_records=1)
        if len(consumer.assignment()) == 1 and not ready:
            ready = True
            q.put(("ready", None))
    consumer.seek_to_beginning()
    cpu, last = time.process_time(), None
    end = time.monotonic() + 300
    while time.monotonic() < end:
        if loop.step():
            last = time.time()
        elif sum(store.counts()[k] for k in ("metrics", "images")) >= total:
            break
    loop.flush_commits()
    q.put(("done", (last, loop.stats.records, time.process_time() - cpu)))
    consumer.close(autocommit=False)
    producer.close()
    store.close()


def _gather(q: Any, procs: list[Any], kind: str, timeout: float = 400) -> list[Any]:
    """Each instance's `kind` report; fails as soon as one instance dies without reporting."""
    import queue

    got, deadline = [], time.monotonic() + timeout
    while len(got) < len(procs):
        try:
            what, value = q.get(timeout=1)
            if what == kind:
                got.append(value)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise SystemExit(f"a hub instance failed (exit codes {dead}) or timed out") from None
    return got


def postgres(bootstrap: str, repeat: int, scenarios: tuple[str, ...] = tuple(SCENARIOS)) -> dict[str, Any]:
    """One instance on PostgreSQL per scenario, then two instances on a two-partition topic."""
    from edgemnist.testing.postgres import PostgresCluster

    settings = kafka_settings(bootstrap)
    cluster = PostgresCluster().start()
    out: dict[str, Any] = {}
    try:
        for name in scenarios:
            n_metrics, n_images = SCENARIOS[name]
            topic = f"bench-pg-{name}-{time.time_ns()}"
            filled = fill(settings, topic, n_metrics, n_images)
            total = filled.total
            one = []
            for r in range(repeat):
                url = cluster.fresh_database(f"one_{name}_{r}")
                run = run_ours(settings, topic, total, url, f"bench-pg-{time.time_ns()}")
                verify(settings, topic, run, filled, url)
                one.append(run)
            two_topic = f"bench-pg2-{name}-{time.time_ns()}"
            filled2 = fill(settings, two_topic, n_metrics, n_images, partitions=2)
            two = []
            ctx = multiprocessing.get_context("spawn")
            for r in range(repeat):
                url = cluster.fresh_database(f"two_{name}_{r}")
                Store(url).close()  # the tables, before two processes race to create them
                group = f"bench-pg2-{time.time_ns()}"
                q, go = ctx.Queue(), ctx.Event()
                procs = [ctx.Process(target=_instance, args=(bootstrap, two_topic, total, url, group, q, go))
                         for _ in range(2)]  # fmt: skip
                for p in procs:
                    p.start()
                _gather(q, procs, "ready")
                first = time.time()
                go.set()
                got = _gather(q, procs, "done")
                for p in procs:
                    p.join(60)
                last = max(g[0] for g in got if g[0])
                run = Run(sum(g[1] for g in got), last - first, sum(g[2] for g in got), group)
                verify(settings, two_topic, run, filled2, url)
                two.append((run, [g[1] for g in got]))
                print(f"  pg {name} two instances #{r + 1}: {run.rate:,.0f} msg/s combined, "
                      f"split {[g[1] for g in got]} (verified)", flush=True)  # fmt: skip
            med1 = sorted(one, key=lambda x: x.rate)[(len(one) - 1) // 2]
            med2, split = sorted(two, key=lambda x: x[0].rate)[(len(two) - 1) // 2]
            out[name] = {"one_msgs_per_s": round(med1.rate), "two_msgs_per_s": round(med2.rate),
                         "two_over_one": round(med2.rate / med1.rate, 2), "split": split}  # fmt: skip
    finally:
        cluster.stop()
    return out


def latency(bootstrap: str, settings, tmp: Path, n: int = 1000, rate: float = 200.0) -> dict[str, float]:
    """Send n images at `rate`/s while a client long-polls the view; seconds from send to readable."""
    topic = f"bench-lat-{time.time_ns()}"
    ensure_topics(settings, {topic: 1})
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    with HubProcess(bootstrap, topic, f"sqlite:///{tmp}/lat.db", tmp / "hub.log") as hub:
        producer = make_producer(settings)
        template = make_image("LatCam", 0).to_dict()
        # warm up: the hub's consumer group must have formed before the clock starts
        producer.send(topic, value=json.dumps({**template, "id": "LatCam/warmup"}).encode(), key=b"LatCam")
        producer.flush()
        warm = hub.client.page("UncertainPredictions", 0, 10, wait=60)["items"]
        after = warm[-1]["seq"] if warm else 0

        def follow() -> None:
            for item in hub.client.follow("UncertainPredictions", after=after, wait=5):
                seen[item["tuple"]["id"]] = time.time()
                if len(seen) >= n:
                    return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        for k in range(n):
            mid = f"LatCam/lat/{k}"
            sent[mid] = time.time()
            producer.send(topic, value=json.dumps({**template, "id": mid}).encode(), key=b"LatCam")
            producer.flush()
            time.sleep(max(0.0, 1 / rate - (time.time() - sent[mid])))
        producer.close()
        reader.join(timeout=60)
    lat = sorted(seen[k] - sent[k] for k in seen if k in sent)
    if not lat:
        return {"p50": float("nan"), "p99": float("nan"), "received": 0}
    return {
        "p50": lat[len(lat) // 2],
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "received": len(lat),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="an existing Kafka instead of starting Apache Kafka [env: KAFKA_BOOTSTRAP_SERVERS]",
    )
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-tansu", action="store_true", help="only the Apache Kafka race")
    p.add_argument("--skip-postgres", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of: metrics, images"
    )
    args = p.parse_args(argv)
    scenarios = tuple(s for s in args.scenarios.split(",") if s)
    if not scenarios or set(scenarios) - set(SCENARIOS):
        p.error(f"--scenarios: choose from {', '.join(SCENARIOS)}")
    result: dict[str, Any] = {
        "bench": "hub",
        "store": "sqlite",
        "repeat": args.repeat,
        "cores": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with apache_kafka(args.bootstrap_servers) as (bootstrap, kind):
            print(f"{kind} on {bootstrap}", flush=True)
            result["kafka"] = race(bootstrap, tmp, args.repeat, "kafka", scenarios)
            if not args.skip_postgres:
                result["postgres"] = postgres(bootstrap, args.repeat, scenarios)
            if not args.skip_latency:
                result["latency_s"] = latency(bootstrap, kafka_settings(bootstrap), tmp)
        if not args.skip_tansu:
            with tansu() as (bootstrap, kind):
                print(f"{kind} on {bootstrap}", flush=True)
                result["tansu"] = race(bootstrap, tmp, args.repeat, "tansu", scenarios)
    report(result)
    return 0


def report(result: dict[str, Any]) -> None:
    for broker in ("kafka", "tansu"):
        if broker not in result:
            continue
        rows = []
        for name, r in result[broker].items():
            rows.append([
                f"{broker} {name}", *(r[w]["msgs_per_s"] for w in RUNNERS),
                *(r[w]["cpu_s_per_1000"] * 1000 for w in RUNNERS), *(r[f"{a}/{b}"] for a, b in RATIOS),
            ])  # fmt: skip
        print(table(["scenario", *(f"{w} msg/s" for w in RUNNERS), *(f"{w} CPU-us" for w in RUNNERS),
                     *(f"{a}/{b}" for a, b in RATIOS)], rows))  # fmt: skip
    if "postgres" in result:
        rows = [[name, r["one_msgs_per_s"], r["two_msgs_per_s"], r["two_over_one"], str(r["split"])]
                for name, r in result["postgres"].items()]  # fmt: skip
        print(table(["PostgreSQL", "one instance msg/s", "two instances msg/s", "two/one", "split"], rows))
    lat = result.get("latency_s")
    if lat:
        print(f"send -> view latency: p50 {lat['p50'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms "
              f"({lat['received']} images at 200/s)")  # fmt: skip
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
