"""The hub's side of the learning loop on real Apache Kafka: control topic, retrain, registry, models topic."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from edgemnist.kafka import _admin, make_consumer, make_producer
from edgemnist.model import load_model_bytes
from edgemnist.wire.envelope import ModelEnvelope
from metro_app.client import ApiError
from metro_app.rollout.publish import MAX_RECORD_BYTES
from metro_app.samples import png_frame
from metro_app.store import Store
from metro_app.testing import HubProcess, wait_until
from tests.helpers import topic_names
from tests.loop_data import rotated_uncertain

pytestmark = pytest.mark.integration


def produce(kafka_settings, topic: str, values: list[bytes]) -> None:
    producer = make_producer(kafka_settings)
    try:
        futures = [producer.send(topic, value=v) for v in values]
        producer.flush()
        for f in futures:
            f.get(timeout=60)
    finally:
        producer.close()


def read_records(kafka_settings, topic: str, count: int, timeout: float = 60) -> list:
    consumer = make_consumer(kafka_settings, [topic], f"reader-{topic}-{time.time_ns()}")
    out: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
    finally:
        consumer.close()
    return out


class LoopHub:
    def __init__(self, hub: HubProcess, topics: dict[str, str], store_url: str) -> None:
        self.hub, self.topics, self.store_url = hub, topics, store_url


@pytest.fixture(scope="module")
def loop_hub(
    kafka, kafka_settings, model_path: Path, tmp_path_factory, hub_kafka_client
) -> Iterator[LoopHub]:
    """A hub whose store holds 150 labelled uncertain images of a camera rotated 25 degrees."""
    tmp = tmp_path_factory.mktemp("loop")
    name = topic_names(f"loop-hub-{hub_kafka_client}")
    topics = {k: name(k) for k in ("events", "dlq", "models", "control")}
    store_url = f"sqlite:///{tmp / 'hub.db'}"
    store = Store(store_url)
    msgs = rotated_uncertain(model_path, 150)
    store.write_batch([], msgs)
    for m in msgs:
        store.add_label(m.id or "", str(m.true_class), "tester")
    store.close()
    hub = HubProcess(
        kafka.bootstrap_servers,
        topics["events"],
        store_url,
        tmp / "hub.log",
        extra=[
            "--dlq-topic", topics["dlq"], "--models-topic", topics["models"],
            "--control-topic", topics["control"], "--model", str(model_path),
            "--kafka-client", hub_kafka_client,
        ],
    )  # fmt: skip
    with hub:
        yield LoopHub(hub, topics, store_url)


def published_child(hub: HubProcess) -> dict | None:
    models = hub.client.models()
    return next((m for m in models if m["status"] == "published" and m["parent"]), None)


def test_a_control_command_retrains_and_publishes_a_better_model(loop_hub, kafka_settings):
    hub, topics = loop_hub.hub, loop_hub.topics
    produce(
        kafka_settings, topics["control"], [json.dumps({"type": "command", "payload": "retrain"}).encode()]
    )
    model = wait_until(lambda: published_child(hub), 180, "a published retrained model")
    assert model["field_accuracy"] > model["parent_field_accuracy"], model["reason"]
    assert model["n_field_train"] + model["n_field_test"] == 150
    assert [e["status"] for e in model["events"]] == ["candidate", "publishing", "published"]
    parent = hub.client.model(model["parent"])
    assert parent["parent"] is None  # --model, registered as serving when the hub started
    assert [e["status"] for e in parent["events"]] == ["serving", "superseded"]
    assert parent["status"] == "superseded" and model["version"] in parent["reason"]
    # the command was recorded in the store before its offset was committed, and closed when done
    requests = wait_until(
        lambda: (hub.client.health()["consumer"].get("retrain_requests") or {}).get("done"),
        30,
        "the request done",
    )
    assert requests == 1 and hub.client.health()["consumer"]["retrain_requests"] == {"done": 1}

    [rec] = read_records(kafka_settings, topics["models"], 1)
    envelope = ModelEnvelope.from_record(rec.key, rec.value)
    assert rec.key == b"*" and envelope.targets is None
    assert (envelope.version, envelope.parent, envelope.sha256) == (
        model["version"],
        parent["version"],
        model["sha256"],
    )
    loaded = load_model_bytes(envelope.data, expected_sha256=envelope.sha256, version=envelope.version)
    assert loaded.version == model["version"]
    assert hub.client.model_file(model["version"]) == envelope.data

    admin = _admin(kafka_settings, 10)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics["models"])])
    finally:
        admin.close()
    configs = next(iter(described.values()))[topics["models"]]
    value = {k: v["value"] if isinstance(v, dict) else v for k, v in configs.items()}
    assert value["cleanup.policy"] == "compact", configs
    assert int(value["max.message.bytes"]) == MAX_RECORD_BYTES


def test_post_retrain_is_202_then_409_while_running(loop_hub):
    client = loop_hub.hub.client
    first = client.retrain()
    with pytest.raises(ApiError) as busy:
        client.retrain()
    assert busy.value.status == 409 and first["job"] in str(busy.value)
    job = wait_until(
        lambda: (j := client.retrain_job(first["job"]))["state"] != "running" and j,
        120,
        "the retrain job to finish",
    )
    assert job["state"] == "done" and job["result"]["parent"] is not None
    assert job["result"]["version"] in {m["version"] for m in client.models()}


def test_training_events_become_labels_and_bad_events_go_to_the_dlq(loop_hub, kafka_settings):
    hub, topics = loop_hub.hub, loop_hub.topics
    png = base64.b64encode(png_frame(4)).decode()
    event = {"type": "training", "payload": {"image": png, "label": 4, "labeller": "line-3", "source": "scanner",
                                             "id": f"scan-{time.time_ns()}"}}  # fmt: skip
    no_id = {"type": "training", "payload": {"image": base64.b64encode(png_frame(5)).decode(), "label": 5,
                                             "labeller": "line-3", "source": "scanner"}}  # fmt: skip
    bad = {"type": "training", "payload": {"image": png, "label": 11, "labeller": "x", "source": "y"}}
    produce(kafka_settings, topics["control"], [json.dumps(v).encode() for v in (event, event, no_id, bad)])

    def scanner_labels() -> list:
        return [lab for lab in hub.client._json("/labels?max=10000")["labels"] if lab["labeller"] == "line-3"]

    labels = wait_until(lambda: len(scanner_labels()) >= 2 and scanner_labels(), 60, "two scanner labels")
    assert sorted(lab["label"] for lab in labels) == ["4", "5"]
    assert {lab["image_id"] for lab in labels} >= {event["payload"]["id"]}
    assert hub.client._request(f"/images/{event['payload']['id']}") == png_frame(4)
    [dead] = read_records(kafka_settings, topics["dlq"], 1)
    assert b"'label' must be a digit 0 to 9, got 11" in dict(dead.headers)["reason"]
    assert len(scanner_labels()) == 2  # the repeated event added nothing (the DLQ record came after it)
