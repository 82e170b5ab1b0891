"""Scoring on request: HTTP push into an edge, and prediction requests through Kafka to the hub.

HTTP push: a real `edge-app run --http-port` (a camera whose own source
idles; only uncertain images go home), requests sent one after another with 1 and with 64 PNG frames each;
images/s and the p50/p99 time per request (push -> prepared, scored, filtered,
in the outbox -> answer). Prediction requests: a real `metro-app run`; a burst
of requests (half PNG, half pixels) for requests/s from first send to last
response, then a paced stream for the p50/p99 time from send to response.
The reference design has neither interface, so there is no ratio; each figure
is the median of --repeat runs on a shared machine. Last line: JSON.

    .venv/bin/python bench/serving.py [--bootstrap-servers HOST:PORT] [--model M.skops] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_model, broker, print_json, table  # noqa: E402
from edgemnist.data import load_frames
from edgemnist.kafka import ensure_topics, make_consumer, make_producer
from edgemnist.kafka.settings import KafkaSettings
from edgemnist.prep import prepare_batch
from metro_app.testing import HubProcess, free_port, wait_until

_PUSH_TOKEN = "bench-push-token"


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def _post(url: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {_PUSH_TOKEN}"}
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=120) as resp:
        if resp.status != 200:
            raise RuntimeError(f"push answered {resp.status}")
        resp.read()


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:
        return False


def http_push(bootstrap: str, model: Path, tmp: Path, per_request: int, requests: int) -> dict[str, float]:
    """images/s and per-request latency for `requests` sequential pushes of `per_request` frames."""
    frames = load_frames("bundled").frames
    port = free_port()
    cmd = [sys.executable, "-m", "edge_app.cli", "run", "--camera", "BenchPush", "--delay", "3600",
           "--http-port", str(port), "--bootstrap-servers", bootstrap, "--topic", f"bench-push-{time.time_ns()}",
           "--model", str(model), "--outbox", str(tmp / f"push-{time.time_ns()}.db"), "--metrics-duration", "5"]  # fmt: skip
    env = {**os.environ, "EDGE_MNIST_EDGE_TOKEN": _PUSH_TOKEN}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(f"{base}/health"), 60, "the edge's HTTP port")
        bodies = []
        for r in range(requests):
            start = (r * per_request) % (len(frames) - per_request)
            imgs = [base64.b64encode(f).decode() for f in frames[start : start + per_request]]
            bodies.append(json.dumps({"images": imgs}).encode())
        _post(f"{base}/frames", bodies[0])  # warm-up
        lat = []
        t0 = time.perf_counter()
        for body in bodies:
            s = time.perf_counter()
            _post(f"{base}/frames", body)
            lat.append(time.perf_counter() - s)
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(60)
    return {"images_per_s": requests * per_request / wall, "p50_s": _pct(lat, 50), "p99_s": _pct(lat, 99)}


def _requests(n: int, prefix: str) -> list[tuple[str, bytes]]:
    frames = load_frames("bundled").frames
    pixels = prepare_batch(frames[:500])
    out = []
    for i in range(n):
        rid = f"{prefix}{i}"
        if i % 2:
            body = {"id": rid, "model": "latest", "image": base64.b64encode(frames[i % 1000]).decode()}
        else:
            body = {"id": rid, "model": "latest", "pixels": pixels[i % 500].ravel().tolist()}
        out.append((rid, json.dumps(body).encode()))
    return out


def _reader(
    settings: KafkaSettings, topic: str, prefix: str, seen: dict[str, float], want: int, done: threading.Event
) -> None:
    consumer = make_consumer(settings, [topic], group_id=None)
    try:
        deadline = time.monotonic() + 180
        while len(seen) < want and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=100).values():
                now = time.perf_counter()
                for r in recs:
                    rid = json.loads(r.value)["id"]
                    if rid.startswith(prefix):
                        seen.setdefault(rid, now)
    finally:
        consumer.close()
        done.set()


def predictions(
    settings: KafkaSettings, hub_topics: tuple[str, str], burst: int, paced: int, rate: float
) -> dict[str, float]:
    """requests/s over a burst, and send -> response latency at a paced `rate`."""
    req_topic, resp_topic = hub_topics
    producer = make_producer(settings, linger_ms=1)
    results = {}
    for phase, n, pace in (("burst", burst, 0.0), ("paced", paced, 1 / rate)):
        prefix = f"{phase}-{time.time_ns()}-"
        reqs = _requests(n, prefix)
        seen: dict[str, float] = {}
        done = threading.Event()
        reader = threading.Thread(
            target=_reader, args=(settings, resp_topic, prefix, seen, n, done), daemon=True
        )
        reader.start()
        time.sleep(1.0)  # the reader has its partitions
        sent: dict[str, float] = {}
        t0 = time.perf_counter()
        for i, (rid, body) in enumerate(reqs):
            if pace:
                pause = t0 + i * pace - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            sent[rid] = time.perf_counter()
            producer.send(req_topic, value=body, key=rid.encode())
            if pace:
                producer.flush()
        producer.flush()
        done.wait(200)
        got = [k for k in seen if k.startswith(prefix)]
        if phase == "burst":
            results["requests_per_s"] = len(got) / (max(seen[k] for k in got) - t0) if got else 0.0
        else:
            lat = [seen[k] - sent[k] for k in got]
            results.update(p50_s=_pct(lat, 50), p99_s=_pct(lat, 99), answered=len(got))
    producer.close()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    p.add_argument("--model", type=Path, default=None, help="a .skops model (default: train one now)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--requests", type=int, default=200, help="HTTP pushes per size")
    p.add_argument("--burst", type=int, default=5000, help="prediction requests in the throughput burst")
    p.add_argument("--paced", type=int, default=1000, help="prediction requests in the latency run")
    p.add_argument("--rate", type=float, default=200.0, help="requests/s of the latency run")
    args = p.parse_args(argv)
    with broker(args.bootstrap_servers) as (bootstrap, where), tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        print(where)
        model = bench_model(args.model, tmp)
        settings = KafkaSettings(bootstrap_servers=tuple(bootstrap.split(",")))
        push: dict[int, list[dict[str, float]]] = {1: [], 64: []}
        for _ in range(args.repeat):
            for k in push:
                push[k].append(
                    http_push(bootstrap, model, tmp, k, args.requests if k == 1 else args.requests // 4)
                )
        topics = (f"bench-req-{time.time_ns()}", f"bench-resp-{time.time_ns()}")
        ensure_topics(settings, {topics[0]: 1, topics[1]: 1})
        hub = HubProcess(bootstrap, f"bench-hub-{time.time_ns()}", f"sqlite:///{tmp}/hub.db", tmp / "hub.log",
                         extra=["--model", str(model), "--predict-requests", topics[0],
                                "--predict-responses", topics[1]])  # fmt: skip
        with hub:
            pred = [
                predictions(settings, topics, args.burst, args.paced, args.rate) for _ in range(args.repeat)
            ]

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    rows = [
        [f"HTTP push, {k} image{'s' if k > 1 else ''}/request", med(push[k], "images_per_s"), "images/s",
         med(push[k], "p50_s") * 1000, med(push[k], "p99_s") * 1000] for k in push
    ]  # fmt: skip
    rows.append(["prediction requests via Kafka", med(pred, "requests_per_s"), "requests/s",
                 med(pred, "p50_s") * 1000, med(pred, "p99_s") * 1000])  # fmt: skip
    print(table(["path", "rate", "unit", "p50 ms", "p99 ms"], rows))
    print(f"(median of {args.repeat}; latency of prediction requests at {args.rate:g} requests/s)")
    print_json(
        {
            "bench": "serving",
            "repeat": args.repeat,
            "http_push": {str(k): {key: med(v, key) for key in v[0]} for k, v in push.items()},
            "predict": {key: med(pred, key) for key in ("requests_per_s", "p50_s", "p99_s", "answered")},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
