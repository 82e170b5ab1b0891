"""Property test over the loop's new ways in: control events, prediction requests and push bodies.

Nothing raises, nothing good is lost, and every bad record is dead-lettered or refused with a reason.
"""

from __future__ import annotations

import base64
import json
from collections import namedtuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_app.http import BadRequest, parse_frames
from edgemnist.model import Model
from edgemnist.testing.hostile import bomb_png
from edgemnist.wire.serving import PredictResponse
from metro_app.ingest.control import ControlLoop
from metro_app.ingest.loop import DeadLetterSink
from metro_app.samples import png_frame
from metro_app.serving.predict import PredictLoop
from metro_app.store import Store

Rec = namedtuple("Rec", "topic partition offset key value")
GOOD_PNG = png_frame(7)
BAD_PNGS = [bomb_png(20000), bomb_png(1100, bits=8), GOOD_PNG[:-20], b"GIF89a", b"", GOOD_PNG[:33]]


class Consumer:
    def __init__(self, records):
        self.batches, self.commits = [{("t", 0): records}], 0

    def poll(self, timeout_ms=0, max_records=None):
        return self.batches.pop(0) if self.batches else {}

    def commit(self):
        self.commits += 1

    def seek(self, tp, offset):
        raise AssertionError("no batch may be retried: every bad record is handled alone")


class Future:
    def get(self, timeout=None):
        return None


class Producer:
    def __init__(self):
        self.sent = []

    def send(self, topic, value=None, key=None, headers=None):
        self.sent.append((topic, key, value))
        return Future()

    def flush(self, timeout=None):
        pass


class Estimator:
    classes_ = np.arange(10)

    def predict_proba(self, x):
        return np.full((len(x), 10), 0.1)


junk = st.one_of(st.binary(max_size=64), st.just(None), st.just(b"[]"), st.just(b'{"type": "training"}'))
good_training = st.integers(0, 9).map(
    lambda d: ("good", {"type": "training", "payload": {"image": base64.b64encode(png_frame(d)).decode(),
                                                         "label": d, "labeller": "l", "source": "s", "id": f"g{d}"}})
)  # fmt: skip
bad_training = st.sampled_from(BAD_PNGS).map(
    lambda png: ("bad", {"type": "training", "payload": {"image": base64.b64encode(png).decode(), "label": 1,
                                                          "labeller": "l", "source": "s"}})
)  # fmt: skip
command = st.just(("command", {"type": "command", "payload": "retrain"}))
control_records = st.lists(
    st.one_of(good_training, bad_training, command, junk.map(lambda j: ("junk", j))), max_size=8
)


@pytest.fixture(scope="module")
def prop_store(tmp_path_factory):
    s = Store(f"sqlite:///{tmp_path_factory.mktemp('prop')}/hub.db")
    yield s
    s.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(control_records)
def test_control_events_good_kept_bad_dead_lettered(prop_store, items):
    records = [
        Rec("control", 0, i, None, v if not isinstance(v, dict) else json.dumps(v).encode())
        for i, (_, v) in enumerate(items)
    ]
    producer, commands = Producer(), []
    loop = ControlLoop(
        Consumer(records), prop_store, DeadLetterSink(producer, "dlq"), commands.append, retry_seconds=0
    )
    assert loop.step() == len(records)
    good = {v["payload"]["id"] for kind, v in items if kind == "good"}
    stored = {lab["image_id"] for lab in prop_store.labels()}
    assert good <= stored
    bad = [i for i, (kind, _) in enumerate(items) if kind in ("bad", "junk")]
    assert len(producer.sent) == len(bad)
    assert commands == ["retrain"] * sum(1 for kind, _ in items if kind == "command")


def _request(kind_png):
    kind, png = kind_png
    return kind, json.dumps({"id": f"r-{kind}", "image": base64.b64encode(png).decode()}).encode()


requests = st.lists(
    st.one_of(
        st.integers(0, 9).map(lambda d: ("good", png_frame(d))).map(_request),
        st.sampled_from(BAD_PNGS).map(lambda p: ("bad", p)).map(_request),
        junk.map(lambda j: ("bad", j)),
    ),
    max_size=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_prediction_requests_one_answer_each_bad_ones_with_a_reason(items):
    records = [Rec("req", 0, i, f"k{i}".encode(), v) for i, (_, v) in enumerate(items)]
    producer = Producer()
    model = Model(Estimator(), "m-1", "sha")
    loop = PredictLoop(Consumer(records), producer, lambda name: model, "resp")
    assert loop.step() == len(records)
    got = [PredictResponse.from_json(v) for _, _, v in producer.sent]
    assert len(got) == len(items)
    for (kind, _), resp in zip(items, got, strict=True):
        if kind == "good":
            assert resp.predictions is not None and resp.error is None
        else:
            assert resp.error


bodies = st.one_of(
    st.binary(max_size=256).map(lambda b: (b, "image/png")),
    st.sampled_from(BAD_PNGS).map(lambda p: (p, "image/png")),
    st.lists(st.sampled_from([*BAD_PNGS, GOOD_PNG]), min_size=1, max_size=4).map(
        lambda ps: (
            json.dumps({"images": [base64.b64encode(p).decode() for p in ps]}).encode(),
            "application/json",
        )
    ),
    st.just((GOOD_PNG, "image/png")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_push_bodies_are_accepted_whole_or_refused_with_a_reason(body_ctype):
    body, ctype = body_ctype
    try:
        push = parse_frames(body, ctype)
    except BadRequest as exc:
        assert str(exc) and 400 <= exc.status < 500
    else:
        assert push.frames and all(f == GOOD_PNG for f in push.frames)
