"""Small helpers the integration and e2e tests share: running an edge, reading a topic."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgemnist.kafka import make_consumer
from edgemnist.messages import MetricsMessage, UncertainImage, parse_message
from edgemnist.settings import KafkaSettings

__all__ = [
    "EDGE_APP",
    "edge_cmd",
    "read_topic",
    "read_values",
    "split",
    "metric_total",
    "read_full_pass",
    "outbox_rows",
]

EDGE_APP = [sys.executable, "-m", "edge_app.cli"]


def edge_cmd(
    bootstrap_servers: str, topic: str, model: Path, outbox: Path, camera: str, *extra: str
) -> list[str]:
    """`edge-app run` over the stream set once, 2 s metrics windows."""
    return [*EDGE_APP, "run", "--camera", camera, "--repeat", "1", "--metrics-duration", "2",
            "--bootstrap-servers", bootstrap_servers, "--topic", topic, "--model", str(model),
            "--outbox", str(outbox), *extra]  # fmt: skip


def read_topic(
    settings: KafkaSettings,
    topic: str,
    done: Callable[[list[Any]], bool],
    timeout: float = 120.0,
    parse: Callable[[bytes], Any] = parse_message,
    settle: float = 0.0,
) -> list[Any]:
    """Every message on `topic` from the beginning, parsed, until `done(messages)` or timeout.

    With `settle`, keeps reading that many seconds more, so a test sees duplicates too.
    """
    consumer = make_consumer(settings, [topic], group_id=f"reader-{topic}-{time.time_ns()}")
    msgs: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done(msgs):
            for records in consumer.poll(timeout_ms=500).values():
                msgs.extend(parse(r.value) for r in records)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            for records in consumer.poll(timeout_ms=200).values():
                msgs.extend(parse(r.value) for r in records)
    finally:
        consumer.close()
    return msgs


def read_values(
    settings: KafkaSettings, topic: str, count: int, timeout: float = 120, settle: float = 0.0
) -> list[bytes]:
    """The raw values on `topic` once `count` arrived (plus `settle` seconds more)."""
    return read_topic(settings, topic, lambda v: len(v) >= count, timeout, parse=bytes, settle=settle)


def split(msgs: list) -> tuple[list[UncertainImage], list[MetricsMessage]]:
    """Uncertain images and metrics messages, in topic order."""
    return (
        [m for m in msgs if isinstance(m, UncertainImage)],
        [m for m in msgs if isinstance(m, MetricsMessage)],
    )


def metric_total(metrics: list[MetricsMessage]) -> int:
    """Images counted by the metrics windows, each window once (by id) however often it was delivered."""
    return sum(m.total for m in {m.id: m for m in metrics}.values())


def read_full_pass(
    settings: KafkaSettings, topic: str, n: int = 1000
) -> tuple[list[UncertainImage], list[MetricsMessage]]:
    """A Test camera's messages once all `n` counts and metrics summing to `n` are on the topic."""
    msgs = read_topic(
        settings,
        topic,
        lambda ms: len({m.count for m in split(ms)[0]}) >= n and metric_total(split(ms)[1]) >= n,
    )
    return split(msgs)


def outbox_rows(path: Path) -> int:
    """Messages still waiting in an edge's outbox file."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
