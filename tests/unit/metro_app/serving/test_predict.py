"""The hub's prediction loop with fakes: one predict_proba per model per poll, responses keyed like requests."""

import base64
import io
import json

import numpy as np
from PIL import Image

from edgemnist.model import Model
from edgemnist.testing.fakes import FakeConsumer, FakeProducer, Record
from edgemnist.testing.hostile import bomb_png
from edgemnist.wire.serving import PredictResponse
from metro_app.serving.predict import PredictLoop


class Estimator:
    classes_ = np.arange(10)

    def __init__(self):
        self.calls = 0

    def predict_proba(self, x):
        self.calls += 1
        out = np.full((len(x), 10), 0.01)
        out[np.arange(len(x)), x.sum(axis=1) % 10] = 0.91
        return out


def _png(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(255 - pixels).convert("RGB").save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _recs(bodies):
    return {("req", 0): [Record("req", 0, i, f"k{i}".encode(), b) for i, b in enumerate(bodies)]}


def test_a_poll_is_answered_in_order_with_one_predict_call():
    est = Estimator()
    model = Model(est, "m-1", "sha")
    digit = np.zeros((28, 28), np.uint8)
    digit[8:20, 12:16] = 255
    bodies = [
        json.dumps({"id": "a", "model": "latest", "pixels": [1] + [0] * 783}).encode(),
        json.dumps({"id": "b", "model": "m-1", "image": _png(digit)}).encode(),
        json.dumps({"id": "c", "model": "other", "pixels": [0] * 784}).encode(),
        b"not json",
        json.dumps(
            {"id": "e", "model": "latest", "image": base64.b64encode(b"\x89PNG\r\n\x1a\nxx").decode()}
        ).encode(),
    ]
    consumer, producer = FakeConsumer([_recs(bodies)]), FakeProducer()
    loop = PredictLoop(consumer, producer, lambda name: model if name in ("latest", "m-1") else None, "resp")
    assert loop.step() == 5
    assert est.calls == 1 and consumer.commits == 1
    assert [s.key for s in producer.sent] == [b"k0", b"k1", b"k2", b"k3", b"k4"]
    got = [PredictResponse.from_json(s.value) for s in producer.sent]
    assert got[0].id == "a" and got[0].result_class == 1 and got[0].model_version == "m-1"
    assert got[1].id == "b" and got[1].predictions is not None
    assert got[2].error == "unknown model 'other'"
    assert got[3].id == "k3" and "not JSON" in got[3].error  # no readable id: answered under the key
    assert got[4].id == "e" and "malformed image" in got[4].error
    assert loop.stats.answered == 2 and loop.stats.errors == 3


def test_unacknowledged_responses_rewind_without_commit():
    model = Model(Estimator(), "m-1", "sha")
    consumer = FakeConsumer([_recs([json.dumps({"id": "a", "pixels": [0] * 784}).encode()])])
    loop = PredictLoop(consumer, FakeProducer(fail=True), lambda n: model, "resp", retry_seconds=0)
    assert loop.step() == 0
    assert consumer.commits == 0 and consumer.seeks == [(("req", 0), 0)]


def test_a_bomb_png_is_refused_before_decoding_and_its_batch_is_answered():
    """Issue 24.3: a 20000x20000 PNG in one request is refused by its header; the others are scored."""
    est = Estimator()
    model = Model(est, "m-1", "sha")
    digit = np.zeros((28, 28), np.uint8)
    digit[8:20, 12:16] = 255
    bomb = base64.b64encode(bomb_png(20000)).decode()
    bodies = [
        json.dumps({"id": "a", "image": _png(digit)}).encode(),
        json.dumps({"id": "bomb", "image": bomb}).encode(),
        json.dumps({"id": "c", "pixels": [0] * 784}).encode(),
    ]
    consumer, producer = FakeConsumer([_recs(bodies)]), FakeProducer()
    loop = PredictLoop(consumer, producer, lambda name: model, "resp")
    assert loop.step() == 3
    got = [PredictResponse.from_json(v) for v in (s.value for s in producer.sent)]
    assert [r.id for r in got] == ["a", "bomb", "c"]
    assert got[0].predictions is not None and got[2].predictions is not None
    assert "20000x20000" in got[1].error and "1024" in got[1].error
    assert loop.stats.answered == 2 and loop.stats.errors == 1


def test_a_request_the_scorer_chokes_on_fails_alone(monkeypatch):
    """One image whose preparation raises is answered with the error; its neighbours are scored."""
    import metro_app.serving.predict as predict

    est = Estimator()
    model = Model(est, "m-1", "sha")
    digit = np.zeros((28, 28), np.uint8)
    digit[8:20, 12:16] = 255
    real = predict.prepare_frames

    def choke(frames):
        if any(len(f) == 0 for f in frames) or len(frames) > 1:
            raise MemoryError("cannot allocate")
        return real(frames)

    monkeypatch.setattr(predict, "prepare_frames", choke)
    bodies = [json.dumps({"id": i, "image": _png(digit)}).encode() for i in ("a", "b")]
    consumer, producer = FakeConsumer([_recs(bodies)]), FakeProducer()
    loop = PredictLoop(consumer, producer, lambda name: model, "resp")
    assert loop.step() == 2
    got = [PredictResponse.from_json(v) for v in (s.value for s in producer.sent)]
    assert [r.predictions is not None for r in got] == [True, True]
