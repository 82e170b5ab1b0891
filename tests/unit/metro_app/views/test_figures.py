"""Derived figures live beside MetricsMessage: typed, and loud when the wire changes under them."""

import pytest

from edgemnist.errors import SchemaError
from edgemnist.wire.messages import MetricsMessage
from metro_app.dashboard.topic import format_metrics
from metro_app.samples import make_metrics
from metro_app.views.figures import (
    camera_counts,
    camera_totals,
    derived_rates,
    live_accuracy,
    typed_windows,
    worst_p99,
)
from metro_app.views.health import fleet_bucket


def test_counts_accuracy_and_p99_over_a_camera_s_windows():
    a1, a2, b = make_metrics("A", 1, correct=15), make_metrics("A", 2, correct=19), make_metrics("B", 1)
    assert camera_counts([a1, a2, b], "A") == (10, 40)  # 5 of 20 uncertain per window
    assert camera_totals([a1, a2, b]) == {"A": 40, "B": 20}
    assert live_accuracy([a1, a2, b], "A") == (34, 40)
    assert worst_p99([a1, b], "prep") == a1.prep.percentiles[3] == a1.prep.p99
    assert worst_p99([], "predict") is None


def test_derived_rates_of_a_window():
    r = derived_rates(make_metrics("A", 1, images=20))  # metrics_duration 2 s, parallelism 1
    assert r.images == 20 and r.image_rate == 10.0 and r.score_rate == 10.0
    assert r.ingest_overhead == pytest.approx(0.1 - 0.002)


def test_a_window_shared_by_many_cameras_is_parsed_once():
    body = make_metrics("A", 1).to_dict() | {
        "camera_metrics": {c: {"certain": [1] * 11, "uncertain": [0] * 11} for c in "XYZ"}
    }
    typed = typed_windows({"X": [body], "Y": [body], "Z": [body]})
    assert typed["X"][0] is typed["Y"][0] is typed["Z"][0]
    assert isinstance(typed["X"][0], MetricsMessage) and typed["X"][0].total == 33


def test_a_renamed_wire_key_breaks_loudly_not_silently():
    body = make_metrics("A", 1).to_dict()
    body["latency"] = body.pop("latency_metrics")
    for use in (format_metrics, lambda b: fleet_bucket(0, [b]), lambda b: typed_windows({"A": [b]})):
        with pytest.raises(SchemaError, match="latency_metrics"):
            use(body)
