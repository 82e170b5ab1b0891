"""The upload cap: exact counts over a sliding minute, held_back in every metrics message, metrics never capped."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from edge_app.runner import StdoutSink, run_edge
from edge_app.settings import EdgeSettings
from edge_app.stages import UploadCap
from edgemnist.errors import ConfigError, SchemaError
from edgemnist.testing.fakes import FakeClock
from edgemnist.wire.messages import MetricsMessage, parse_message
from metro_app.samples import make_image, make_metrics


def imgs(n: int, start: int = 0) -> list:
    return [make_image("CamA", i) for i in range(start, start + n)]


def test_the_cap_sends_at_most_n_in_any_minute_and_counts_the_rest_exactly():
    clock = FakeClock(1000.0)
    cap = UploadCap(10, clock)
    assert [m.count for m in cap(imgs(4))] == [0, 1, 2, 3]
    clock.now += 20
    assert [m.count for m in cap(imgs(8, 4))] == [4, 5, 6, 7, 8, 9]  # 6 fit; the earliest go first
    assert cap.held_back == 2
    clock.now += 39.9  # 59.9 s after the first four: still in the minute
    assert cap(imgs(3, 12)) == [] and cap.held_back == 5
    clock.now += 0.1  # the first four leave the minute
    assert len(cap(imgs(5, 15))) == 4 and cap.held_back == 6
    assert cap.take_held_back() == 6 and cap.held_back == 0


def test_no_cap_passes_everything():
    cap = UploadCap(0)
    batch = imgs(500)
    assert cap(batch) is batch and cap.held_back == 0


def test_held_back_is_validated_and_round_trips():
    msg = MetricsMessage.from_dict({**make_metrics("CamA", 1).to_dict(), "held_back": 7})
    assert msg.held_back == 7 and json.loads(msg.to_json())["held_back"] == 7
    with pytest.raises(SchemaError, match="held_back"):
        MetricsMessage.from_dict({**make_metrics("CamA", 1).to_dict(), "held_back": -1})
    with pytest.raises(SchemaError, match="held_back"):
        MetricsMessage.from_dict({**make_metrics("CamA", 1).to_dict(), "held_back": "3"})
    with pytest.raises(ConfigError, match="--max-uncertain-per-minute"):
        EdgeSettings(max_uncertain_per_minute=-1)


def test_a_capped_test_camera_sends_n_images_and_reports_every_other_one_held_back(model_path, tmp_path):
    """A Test camera sends every image home: with the cap at 100, the other 900 of 1,000 are held back."""
    out = io.StringIO()
    settings = EdgeSettings(
        model=model_path, camera="TestCam", repeat=1, metrics_duration=0.2, max_uncertain_per_minute=100,
        outbox=tmp_path / "o.db", models_topic="",
    )  # fmt: skip
    stats = run_edge(settings, StdoutSink(out))
    msgs = [parse_message(line) for line in out.getvalue().splitlines()]
    metrics = [m for m in msgs if isinstance(m, MetricsMessage)]
    images = [m for m in msgs if not isinstance(m, MetricsMessage)]
    assert len(images) == 100 and stats.uncertain_held_back == 900
    assert all(m.held_back is not None for m in metrics)  # in every metrics message
    assert sum(m.held_back for m in metrics) == 900  # per window, summing to the run's total
    assert sum(m.total for m in metrics) == 1000  # metrics are never capped
    assert np.all(np.diff([m.count for m in images]) > 0) and images[0].count == 0
