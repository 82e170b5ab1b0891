"""Publishing with a fake producer: the record is a ModelEnvelope for every camera; too large is refused before sending."""

import hashlib

import pytest

from edgemnist.errors import BrokerUnavailable, ModelError
from edgemnist.wire.envelope import MAX_MODEL_BYTES, ModelEnvelope
from metro_app.rollout.publish import MAX_RECORD_BYTES, ModelPublisher, models_topic_config
from metro_app.store import Store


class Meta:
    partition, offset = 0, 41


class Future:
    def __init__(self, error=None):
        self.error = error

    def get(self, timeout=None):
        if self.error:
            raise self.error
        return Meta()


class Producer:
    def __init__(self, error=None):
        self.sent, self.error = [], error

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, value))
        return Future(self.error)

    def flush(self, timeout=None):
        pass


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/hub.db")
    s.add_model("m-1", "0" * 64, b"one", status="published", reason="initial")
    yield s
    s.close()


def add(store, version, data):
    store.add_model(version, hashlib.sha256(data).hexdigest(), data, parent="m-1", reason="accepted")


def test_an_accepted_model_goes_out_as_an_envelope_and_is_marked_published(store):
    add(store, "m-2", b"PK-model-bytes")
    producer = Producer()
    ModelPublisher(topic="models", producer=producer).publish(store, "m-2")
    [(topic, key, value)] = producer.sent
    env = ModelEnvelope.from_record(key, value)
    assert topic == "models" and key == b"*" and env.targets is None
    assert (env.version, env.parent, env.data) == ("m-2", "m-1", b"PK-model-bytes")
    assert env.sha256 == hashlib.sha256(b"PK-model-bytes").hexdigest() and env.created.endswith("Z")
    m = store.model("m-2")
    assert m["status"] == "published" and "models partition 0 offset 41" in m["reason"]
    assert [e["status"] for e in m["events"]] == ["candidate", "published"]


def test_a_model_too_large_is_refused_before_sending(store):
    add(store, "m-big", b"x" * (MAX_MODEL_BYTES + 1))
    producer = Producer()
    with pytest.raises(ModelError, match="m-big.*larger than"):
        ModelPublisher(topic="models", producer=producer).publish(store, "m-big")
    assert producer.sent == [] and store.model("m-big")["status"] == "candidate"


def test_an_unacknowledged_model_stays_a_candidate(store):
    add(store, "m-2", b"PK")
    with pytest.raises(BrokerUnavailable, match="m-2"):
        ModelPublisher(topic="models", producer=Producer(RuntimeError("timeout"))).publish(store, "m-2")
    assert store.model("m-2")["status"] == "candidate"
    with pytest.raises(ModelError, match="'m-9'"):
        ModelPublisher(topic="models", producer=Producer()).publish(store, "m-9")


def test_the_models_topic_is_compacted_and_fits_the_largest_model():
    config = models_topic_config()
    assert config["cleanup.policy"] == "compact"
    assert int(config["max.message.bytes"]) == MAX_RECORD_BYTES > MAX_MODEL_BYTES + 64 * 1024


def test_a_shadow_publication_goes_under_its_own_key_and_the_edges_read_its_role(store):
    add(store, "m-2", b"PK-model-bytes")
    producer = Producer()
    ModelPublisher(topic="models", producer=producer).publish(
        store, "m-2", ("Line3",), status="canary", why="shadow of rollout 1", role="shadow"
    )
    [(_, key, value)] = producer.sent
    env = ModelEnvelope.from_record(key, value)
    assert key == b"shadow:Line3" and env.role == "shadow" and env.targets == ("Line3",)
    assert "Line3 in the shadow role" in store.model("m-2")["reason"]
