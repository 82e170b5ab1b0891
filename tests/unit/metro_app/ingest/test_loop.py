"""Hub loop with fakes: validation, dead letters with headers, commit only after the store commit."""

import json
import threading

import pytest

from edgemnist.testing.fakes import FakeConsumer, FakeProducer, Record, TopicPartition, records
from metro_app.ingest.loop import DeadLetterSink, HubLoop, group_id
from metro_app.ingest.validate import Validator, derived_id
from metro_app.samples import MALFORMED, make_image, make_metrics, malformed
from metro_app.testing import hub_loop


def test_group_id_is_the_references():
    assert group_id("edge-mnist.events") == "MetroEdge-edge-mnist.events"


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_each_malformed_kind_is_refused_with_a_reason(kind):
    value = MALFORMED[kind](3)
    out = Validator()(Record("events", 2, 41, None, value))
    assert not hasattr(out, "id"), kind
    assert out.reason.startswith("message at events[2]@41") and (out.partition, out.offset) == (2, 41)


def test_bad_records_go_to_the_dlq_with_headers_and_good_ones_to_the_store(store):
    values, kinds = [], []
    for i in range(60):
        if i % 3 == 0:
            kind, v = malformed(i)
            kinds.append(kind)
        else:
            v = (make_image if i % 2 else make_metrics)("CamA", i).to_json()
        values.append(v)
    loop, consumer, producer = hub_loop(store, [{TopicPartition("events", 0): records(values)}])
    assert loop.step() == 60
    assert len(set(kinds)) >= 5 and len(producer.sent) == 20
    for sent, kind, i in zip(producer.sent, kinds, range(0, 60, 3), strict=True):
        h = sent.headers
        assert sent.topic == "edge-mnist.dlq" and sent.key == b"cam"
        assert (h["source_topic"], h["source_partition"], h["source_offset"]) == (
            b"events",
            b"0",
            str(i).encode(),
        )
        assert h["reason"].startswith(b"message at events[0]@"), kind
        if kind != "oversized":
            assert sent.value == values[i]
    assert store.counts()["images"] + store.counts()["metrics"] == 40
    assert store.counts()["dead_letters"] == 20 and loop.stats.dead_letters == 20
    assert consumer.commits == 1


def test_oversized_values_are_truncated_in_the_dlq(store):
    big = MALFORMED["oversized"](0)
    loop, _, producer = hub_loop(store, [{TopicPartition("events", 0): records([big])}])
    loop.step()
    [sent] = producer.sent
    assert len(sent.value) < len(big) and sent.headers["truncated_from"] == str(len(big)).encode()


def test_reference_messages_without_id_get_a_stable_derived_id(store):
    ref = make_image("Camera-host1", 5, with_id=False).to_json()
    assert b'"id"' not in ref
    batch = {TopicPartition("events", 3): records([ref], partition=3, start=77)}
    loop, _, _ = hub_loop(store, [batch, batch])
    loop.step()
    loop.step()  # the same record again: stored once under the same id
    [(_, stored)] = store.images_page(0, 10)
    assert stored["id"] == derived_id("events", 3, 77) == "events:3:77"
    assert loop.stats.duplicates == 1


def test_offsets_are_committed_only_after_the_store_commit(store, monkeypatch):
    batch = {
        TopicPartition("events", 0): records([make_metrics("CamA", i).to_json() for i in range(5)], start=100)
    }
    loop, consumer, _ = hub_loop(store, [batch])
    real = store.write_items

    def failing(*args):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(store, "write_items", failing)
    assert loop.step() == 0
    assert (
        consumer.commits == 0
        and consumer.seeks == [(TopicPartition("events", 0), 100)]
        and loop.stats.store_errors == 1
    )
    monkeypatch.setattr(store, "write_items", real)
    consumer.batches.append(batch)
    assert loop.step() == 5 and consumer.commits == 1 and store.counts()["metrics"] == 5


def test_a_dlq_that_cannot_be_written_blocks_the_commit(store):
    batch = {TopicPartition("events", 0): records([b"junk"], start=9)}
    loop, consumer, _ = hub_loop(store, [batch], producer=FakeProducer(fail=True))
    assert loop.step() == 0 and consumer.commits == 0 and consumer.seeks == [(TopicPartition("events", 0), 9)]


def test_the_loop_survives_errors_and_stops_when_told(store):
    class Exploding(FakeConsumer):
        def poll(self, timeout_ms=0, max_records=None):
            if self.batches:
                return super().poll()
            stop.set()
            raise RuntimeError("network")

    stop = threading.Event()
    consumer = Exploding([{TopicPartition("events", 0): records([b"{", make_metrics("CamA", 1).to_json()])}])
    loop = HubLoop(consumer, store, DeadLetterSink(FakeProducer()), retry_seconds=0, lag_interval=0)
    loop.run(stop)
    assert store.counts()["metrics"] == 1 and loop.stats.dead_letters == 1 and loop.stats.lag == 3
    assert json.dumps(loop.stats.as_dict())


def test_view_tuples_are_the_messages_as_sent(store):
    from metro_app.views.catalog import Views

    sent = [make_metrics("CamA", 1).to_json(), make_metrics("CamB", 2, with_id=False).to_json()]
    loop, _, _ = hub_loop(store, [{TopicPartition("events", 0): records(sent, start=5)}])
    loop.step()
    [(_, a), (_, b)] = Views(store).get("ClassificationMetrics").page(0, 10)
    assert a == json.loads(sent[0])
    assert b == {**json.loads(sent[1]), "id": "events:0:6"}
