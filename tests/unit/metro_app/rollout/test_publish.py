"""Publishing with a fake producer: the record is a ModelEnvelope for every camera; too large is refused before sending."""

import hashlib

import pytest

from edgemnist.errors import BrokerUnavailable, ModelError
from edgemnist.testing.fakes import FakeProducer
from edgemnist.wire.envelope import MAX_MODEL_BYTES, ModelEnvelope
from metro_app.rollout.publish import MAX_RECORD_BYTES, ModelPublisher, models_topic_config


@pytest.fixture
def published_store(store):
    """The hub store with one model, m-1, published."""
    store.add_model("m-1", "0" * 64, b"one", status="published", reason="initial")
    return store


def add(store, version, data):
    store.add_model(version, hashlib.sha256(data).hexdigest(), data, parent="m-1", reason="accepted")


def test_an_accepted_model_goes_out_as_an_envelope_and_is_marked_published(published_store):
    add(published_store, "m-2", b"PK-model-bytes")
    producer = FakeProducer(first_offset=41)
    ModelPublisher(topic="models", producer=producer).publish(published_store, "m-2")
    [sent] = producer.sent
    topic, key, value = sent.topic, sent.key, sent.value
    env = ModelEnvelope.from_record(key, value)
    assert topic == "models" and key == b"*" and env.targets is None
    assert (env.version, env.parent, env.data) == ("m-2", "m-1", b"PK-model-bytes")
    assert env.sha256 == hashlib.sha256(b"PK-model-bytes").hexdigest() and env.created.endswith("Z")
    m = published_store.model("m-2")
    assert m["status"] == "published" and "models partition 0 offset 41" in m["reason"]
    assert [e["status"] for e in m["events"]] == ["candidate", "publishing", "published"]


def test_every_publication_carries_a_larger_number_than_the_one_before(published_store):
    """Issue 24.7: edges order models by the registry's publication number, not the sender's clock."""
    add(published_store, "m-2", b"PK-model-bytes")
    producer = FakeProducer()
    publisher = ModelPublisher(topic="models", producer=producer)
    publisher.publish(published_store, "m-2", ("CamA",), status="canary")
    publisher.publish(published_store, "m-1", ("CamA",), why="rollback")
    publisher.publish(published_store, "m-2")
    seqs = [ModelEnvelope.from_record(s.key, s.value).seq for s in producer.sent]
    assert seqs == sorted(set(seqs)) and len(seqs) == 3 and all(isinstance(n, int) for n in seqs)


def test_a_model_too_large_is_refused_before_sending(published_store):
    add(published_store, "m-big", b"x" * (MAX_MODEL_BYTES + 1))
    producer = FakeProducer(first_offset=41)
    with pytest.raises(ModelError, match="m-big.*larger than"):
        ModelPublisher(topic="models", producer=producer).publish(published_store, "m-big")
    assert producer.sent == [] and published_store.model("m-big")["status"] == "candidate"


def test_an_unacknowledged_model_stays_a_candidate(published_store):
    add(published_store, "m-2", b"PK")
    with pytest.raises(BrokerUnavailable, match="m-2"):
        ModelPublisher(topic="models", producer=FakeProducer(error=RuntimeError("timeout"))).publish(
            published_store, "m-2"
        )
    assert published_store.model("m-2")["status"] == "candidate"
    with pytest.raises(ModelError, match="'m-9'"):
        ModelPublisher(topic="models", producer=FakeProducer(first_offset=41)).publish(published_store, "m-9")


def test_the_models_topic_is_compacted_and_fits_the_largest_model():
    config = models_topic_config()
    assert config["cleanup.policy"] == "compact"
    assert int(config["max.message.bytes"]) == MAX_RECORD_BYTES > MAX_MODEL_BYTES + 64 * 1024


def test_a_model_is_recorded_publishing_before_it_is_sent_and_published_after(published_store):
    """Issue 24.8: a crash between send and record leaves a visible `publishing` mark, not a silent candidate."""
    add(published_store, "m-2", b"PK-model-bytes")
    seen = []

    class Watching(FakeProducer):
        def send(self, topic, key=None, value=None, **kw):
            seen.append([e["status"] for e in published_store.model("m-2")["events"]])
            return super().send(topic, key, value, **kw)

    ModelPublisher(topic="models", producer=Watching()).publish(published_store, "m-2")
    assert seen == [["candidate", "publishing"]]
    events = published_store.model("m-2")["events"]
    assert [e["status"] for e in events] == ["candidate", "publishing", "published"]
    assert "models" in events[1]["reason"] and published_store.model("m-2")["status"] == "published"


def test_a_shadow_publication_goes_under_its_own_key_and_the_edges_read_its_role(published_store):
    add(published_store, "m-2", b"PK-model-bytes")
    producer = FakeProducer()
    ModelPublisher(topic="models", producer=producer).publish(
        published_store, "m-2", ("Line3",), status="canary", why="shadow of rollout 1", role="shadow"
    )
    [sent] = producer.sent
    env = ModelEnvelope.from_record(sent.key, sent.value)
    assert sent.key == b"shadow:Line3" and env.role == "shadow" and env.targets == ("Line3",)
    assert "Line3 in the shadow role" in published_store.model("m-2")["reason"]
