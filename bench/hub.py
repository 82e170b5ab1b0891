"""Hub throughput and latency, against the reference design measured in the same run.

Throughput: messages/s one hub instance consumes, validates and stores (SQLite),
for metrics-only, images-only and a realistic mix (1 metrics : 4 images), next
to the reference's hub design on the same records (consume, json.loads, keep
in an in-memory buffer: no validation, no store). Latency: from an edge's send
to the tuple being readable through the HTTP API (a real `metro-app run`,
long-polled), p50/p99. One core's worth of work per process; the machine is
shared, so each figure is the median of --repeat runs. Last line: JSON.

    .venv/bin/python bench/hub.py [--bootstrap-servers HOST:PORT] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from edgemnist.kafka import ensure_topics, make_consumer, make_producer
from metro_app.consumer import DeadLetterSink, HubLoop
from metro_app.samples import make_image, make_metrics
from metro_app.store import Store
from metro_app.testing import HubProcess

SCENARIOS = {"metrics": (20_000, 0), "images": (0, 6_000), "mix": (2_000, 8_000)}


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    from edgemnist.broker import LocalBroker

    with LocalBroker() as local:
        yield local.bootstrap_servers


def kafka_settings(bootstrap: str):
    from edgemnist.settings import resolve

    return resolve(bootstrap_servers=bootstrap)


def fill(settings, topic: str, n_metrics: int, n_images: int) -> int:
    """Produce the scenario's messages once (templates re-used with fresh ids, so building is cheap)."""
    ensure_topics(settings, {topic: 1})
    m = make_metrics("BenchCam", 0).to_dict()
    i = make_image("BenchCam", 0).to_dict()
    producer = make_producer(settings)
    total = n_metrics + n_images
    for k in range(total):
        is_metrics = n_images == 0 or (n_metrics and k % (total // n_metrics) == 0)
        body = {**(m if is_metrics else i), "id": f"BenchCam/{topic}/{k}"}
        producer.send(topic, value=json.dumps(body).encode(), key=b"BenchCam")
    producer.flush()
    producer.close()
    return total


def hub_rate(settings, topic: str, total: int, db: Path) -> float:
    consumer = make_consumer(
        settings,
        [topic],
        f"bench-hub-{time.time_ns()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    store = Store(f"sqlite:///{db}")
    producer = make_producer(settings)
    loop = HubLoop(
        consumer, store, DeadLetterSink(producer, "bench.dlq"), max_records=2000, poll_timeout_ms=100
    )
    t0 = None
    while loop.stats.records < total:
        start = time.perf_counter()
        if loop.step() and t0 is None:
            t0 = start  # from the first batch on: joining the group is not the hub's work
    rate = total / (time.perf_counter() - t0) if t0 else 0.0
    consumer.close()
    producer.close()
    store.close()
    return rate


def reference_rate(settings, topic: str, total: int) -> float:
    consumer = make_consumer(settings, [topic], f"bench-ref-{time.time_ns()}", auto_offset_reset="earliest")
    buf: deque = deque(maxlen=100)
    seen, t0 = 0, None
    while seen < total:
        start = time.perf_counter()
        for recs in consumer.poll(timeout_ms=100, max_records=2000).values():
            t0 = t0 or start
            for r in recs:
                buf.append(json.loads(r.value))
            seen += len(recs)
    consumer.close()
    return total / (time.perf_counter() - t0)


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
    p.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with broker(args.bootstrap_servers) as bootstrap, tempfile.TemporaryDirectory() as tmpdir:
        settings = kafka_settings(bootstrap)
        tmp = Path(tmpdir)
        for name, (n_metrics, n_images) in SCENARIOS.items():
            topic = f"bench-{name}-{time.time_ns()}"
            total = fill(settings, topic, n_metrics, n_images)
            ours = [hub_rate(settings, topic, total, tmp / f"{name}-{r}.db") for r in range(args.repeat)]
            ref = [reference_rate(settings, topic, total) for _ in range(args.repeat)]
            results[name] = {
                "hub_msgs_per_s": statistics.median(ours),
                "reference_msgs_per_s": statistics.median(ref),
            }
            results[name]["ratio"] = results[name]["hub_msgs_per_s"] / results[name]["reference_msgs_per_s"]
        lat = latency(bootstrap, settings, tmp)
    print(f"{'scenario':<10} {'hub msg/s':>10} {'reference msg/s':>16} {'ratio':>6}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['hub_msgs_per_s']:>10.0f} {r['reference_msgs_per_s']:>16.0f} {r['ratio']:>6.2f}"
        )
    print(
        f"send -> view latency: p50 {lat['p50'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms "
        f"({lat['received']} images at 200/s)"
    )
    print(
        json.dumps(
            {
                "bench": "hub",
                "store": "sqlite",
                "repeat": args.repeat,
                "throughput": results,
                "latency_s": lat,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
