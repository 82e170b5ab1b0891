"""Small helpers the integration and e2e tests share: running an edge, reading a topic."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_app.outbox import Outbox
from edgemnist.kafka import make_consumer, make_producer
from edgemnist.kafka.settings import KafkaSettings
from edgemnist.procs import stop_all
from edgemnist.wire.messages import MetricsMessage, UncertainImage, parse_message

__all__ = [
    "EDGE_APP",
    "edge_cmd",
    "read_topic",
    "read_values",
    "split",
    "metric_total",
    "read_full_pass",
    "outbox_rows",
    "topic_names",
]

EDGE_APP = [sys.executable, "-m", "edge_app.cli"]


def topic_names(owner: str) -> Callable[[str], str]:
    """The one way tests name topics: `topic_names("loop-hub")("events")` -> "loop-hub-<8 hex>.events".

    The `make_topic` fixture is this with the test's name as owner; module- and session-scoped
    fixtures, which cannot take `make_topic`, call it with their own name. Names never repeat,
    across tests and across runs against one broker, so no test reads another's messages, and the
    owner in them says whose a topic is.
    """
    prefix = topic_prefix(owner)

    def make(suffix: str = "events") -> str:
        return f"{prefix}.{suffix}"

    return make


def topic_prefix(owner: str) -> str:
    """`<owner>-<8 hex>`: what `topic_names` puts before each suffix; also a Debezium topic prefix."""
    return f"{re.sub(r'[^a-zA-Z0-9]+', '-', owner)[:80].strip('-')}-{uuid.uuid4().hex[:8]}"


def edge_cmd(
    bootstrap_servers: str, topic: str, model: Path, outbox: Path, camera: str, *extra: str
) -> list[str]:
    """`edge-app run` over the stream set once, 2 s metrics windows."""
    return [*EDGE_APP, "run", "--camera", camera, "--repeat", "1", "--metrics-duration", "2",
            "--bootstrap-servers", bootstrap_servers, "--topic", topic, "--model", str(model),
            "--outbox", str(outbox), "--models-topic", f"{topic}.models", *extra]  # fmt: skip


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
    return Outbox.backlog(path).pending


def train_small_model(out: Path, *, n: int = 1500, seed: int = 0) -> Path:
    """A quick second model (PCA + logistic regression on `n` bundled digits), saved with its card."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from edgemnist.data import encode_frames, load_bundled
    from edgemnist.model import save_model
    from edgemnist.prep import prepare_frames

    train = load_bundled("train")
    prepared = prepare_frames(encode_frames(train).frames[:n])
    labels = train.labels[prepared.index]
    pipe = Pipeline(
        [("pca", PCA(30, whiten=True, random_state=seed)), ("clf", LogisticRegression(max_iter=300))]
    )
    pipe.fit(prepared.images.reshape(len(labels), -1), labels)
    path, _ = save_model(
        pipe, out, dataset=f"bundled[:{n}]", n_train=n, n_test=0, accuracy=0.0, uncertain_share=0.0
    )
    return path


def model_envelope(path: Path, targets: tuple[str, ...] | None = None, parent: str | None = None) -> Any:
    """The models-topic envelope of a saved model, from its card (as the hub publishes it)."""
    import json

    from edgemnist.wire.envelope import ModelEnvelope

    card = json.loads(path.with_suffix(".json").read_text())
    return ModelEnvelope(card["version"], card["sha256"], path.read_bytes(), parent, card["created"], targets)


def create_models_topic(settings: KafkaSettings, topic: str) -> None:
    """A compacted models topic whose records may hold a whole model (as the hub creates it)."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(**settings.to_kafka_config())
    try:
        config = {"cleanup.policy": "compact", "max.message.bytes": str(20 * 2**20)}
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs=config)])
    finally:
        admin.close()


def publish_records(settings: KafkaSettings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) records and wait for Kafka to acknowledge every one."""
    from edgemnist.kafka import make_producer

    producer = make_producer(settings, max_request_size=20 * 2**20)
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def produce(
    kafka_settings: KafkaSettings, topic: str, values: list[tuple[bytes | None, bytes]]
) -> list[tuple[int, int]]:
    """Send (value, key) pairs; returns each one's (partition, offset)."""
    producer = make_producer(kafka_settings)
    try:
        futures = [producer.send(topic, value=v, key=k) for v, k in values]
        producer.flush()
        return [(md.partition, md.offset) for md in (f.get(timeout=60) for f in futures)]
    finally:
        producer.close()


def read_all(kafka_settings: KafkaSettings, topic: str, count: int, timeout: float = 120) -> list[Any]:
    """The first `count` records on `topic` (headers and all), or what arrived within `timeout`."""
    consumer = make_consumer(
        kafka_settings, [topic], f"reader-{topic}-{time.time_ns()}", auto_offset_reset="earliest"
    )
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
    finally:
        consumer.close()
    return out


@dataclass(frozen=True)
class ModelsRecord:
    """A models-topic record as the edge's `ModelWatcher` reads it (`timestamp` is the sender's clock)."""

    key: bytes | None
    value: bytes | None
    offset: int
    partition: int = 0
    topic: str = "models"
    timestamp: int = 0


class FakeModelsReader:
    """The models topic for a `ModelWatcher`: missing for the first `missing_first` opens, then holding `records`."""

    def __init__(self, records: Sequence[ModelsRecord], missing_first: int = 0) -> None:
        self.records, self.missing, self.opens, self.closed, self.made = list(records), missing_first, 0, 0, 0

    def __call__(self) -> FakeModelsReader:
        self.made += 1
        return self

    def open(self) -> bool:
        self.opens += 1
        return self.opens > self.missing

    def poll(self, timeout: float) -> list[ModelsRecord]:
        out, self.records = self.records, []
        if not out:
            time.sleep(timeout)
        return out

    def caught_up(self) -> bool:
        return not self.records

    def close(self) -> None:
        self.closed += 1


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], grace: float = 30) -> None:
    """Terminate child processes (edges a test started), all at once, and reap them; kill any that linger."""
    stop_all(procs, grace)
