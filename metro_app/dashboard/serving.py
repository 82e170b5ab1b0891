"""Notebook helpers for scoring on request: ask the hub over Kafka, push into an edge over HTTP, read results.

Each prints what happened and never raises for a missing service, so the
testing-kafka notebook stays runnable headless against any stack.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from edgemnist import topics

__all__ = ["ask_hub", "push_to_edge", "show_results"]


def ask_hub(
    bootstrap_servers: str,
    requests_topic: str = topics.PREDICT_REQUESTS,
    responses_topic: str = topics.PREDICT_RESPONSES,
    n: int = 3,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Send `n` prediction requests (bundled stream frames as PNG) and print the hub's answers."""
    from edgemnist.data import load_frames
    from edgemnist.kafka import ensure_topics, make_consumer, make_producer
    from edgemnist.kafka.settings import KafkaSettings

    settings = KafkaSettings(bootstrap_servers=tuple(bootstrap_servers.split(",")))
    ensure_topics(settings, {requests_topic: 1, responses_topic: 1})
    data = load_frames("bundled")
    run = f"nb-{time.time_ns()}"
    consumer = make_consumer(settings, [responses_topic], group_id=None, auto_offset_reset="latest")
    ready_by = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < ready_by:
        consumer.poll(timeout_ms=200)
    producer = make_producer(settings)
    for i in range(n):
        body = {"id": f"{run}-{i}", "model": "latest", "image": base64.b64encode(data.frames[i]).decode()}
        producer.send(requests_topic, value=json.dumps(body).encode(), key=body["id"].encode())
    producer.flush(30)
    producer.close()
    answers: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while len(answers) < n and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=500).values():
            for r in recs:
                obj = json.loads(r.value)
                if str(obj.get("id", "")).startswith(run):
                    answers[obj["id"]] = obj
    consumer.close()
    for i in range(n):
        a = answers.get(f"{run}-{i}")
        truth = "" if data.labels is None else f" (true {int(data.labels[i])})"
        if a is None:
            print(f"request {i}: no answer within {timeout:g} s (is a hub reading {requests_topic}?)")
        elif "error" in a:
            print(f"request {i}{truth}: error: {a['error']}")
        else:
            print(
                f"request {i}{truth}: class {a['result_class']} p={a['result_probability']:.3f} model {a['model_version']}"
            )
    print(f"prediction requests: {len(answers)} of {n} answered")
    return answers


def push_to_edge(
    edge_url: str | None, start: int = 0, end: int = 5, token: str | None = None
) -> dict[str, Any]:
    """POST /push?start_idx=&end_idx= to an edge started with --http-port, and print the answer.

    The token defaults to env EDGE_MNIST_EDGE_TOKEN: every push needs one (or `--http-no-auth`).
    """
    token = token or os.environ.get("EDGE_MNIST_EDGE_TOKEN")
    if not edge_url:
        print("HTTP push: no edge URL given (start one with: edge-app run --http-port 8081)")
        return {}
    req = urllib.request.Request(
        f"{edge_url.rstrip('/')}/push?start_idx={start}&end_idx={end}", method="POST"
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
    except (urllib.error.URLError, OSError) as exc:
        print(f"HTTP push to {edge_url}: {exc}")
        return {}
    for r in answer["results"]:
        print(
            f"pushed #{r['count']}: class {r['result_class']} p={r['result_probability']:.3f} true {r.get('true_class')}"
        )
    print(f"HTTP push: {answer['count']} scored by model {answer['model_version']} on {answer['camera']}")
    return answer


def show_results(
    bootstrap_servers: str, results_topic: str | None, n: int = 5, timeout: float = 20.0
) -> list[Any]:
    """Print the first `n` records of an edge's --results-topic."""
    if not results_topic:
        print("results topic: none given (start an edge with --results-topic TOPIC)")
        return []
    from edgemnist.kafka import make_consumer
    from edgemnist.kafka.settings import KafkaSettings

    settings = KafkaSettings(bootstrap_servers=tuple(bootstrap_servers.split(",")))
    consumer = make_consumer(settings, [results_topic], group_id=None)
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=500).values():
            got.extend(json.loads(r.value) for r in recs)
    consumer.close()
    for r in got[:n]:
        print(
            f"result {r['id']}: class {r['result_class']} p={r['result_probability']:.3f} true {r.get('true_class')}"
        )
    print(f"results topic {results_topic}: read {len(got[:n])} results")
    return got[:n]
