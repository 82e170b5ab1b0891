"""Wire messages: golden round trips against the examples of docs/reference.md "Messages", and validation."""

import json

import numpy as np
import pytest

from edgemnist.errors import SchemaError
from edgemnist.wire.messages import (
    CameraCounts,
    EdgeConfig,
    LatencyStats,
    MetricsMessage,
    ModelRefusal,
    Origin,
    OutboxStats,
    UncertainImage,
    parse_message,
    utc_timestamp,
)

STATS = {
    "min": 0.001,
    "max": 0.004,
    "mean": 0.002,
    "std": 0.0005,
    "percentiles": [0.002, 0.0025, 0.003, 0.0039],
}
REFERENCE_METRICS = {
    "camera_metrics": {
        "Camera-host1": {
            "certain": [5, 3, 0, 0, 1, 0, 0, 2, 0, 0, 0],
            "uncertain": [0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0],
        }
    },
    "timestamp": "2020-06-01T12:00:10.000000Z",
    "config": {
        "delay": 0.0,
        "repeat": 0,
        "source": 0,
        "confidence": 0.7,
        "classify_parallel": 1,
        "metrics_duration": 10,
    },
    "latency_metrics": {"prep": STATS, "predict": STATS},
}


def reference_image() -> dict:
    prepared = [[0] * 28 for _ in range(28)]
    prepared[14][14] = 255
    return {
        "count": 17,
        "image": "iVBORw0KGgo=",
        "camera": "Camera-host1",
        "timestamp": "2020-06-01T12:00:00.123456Z",
        "prepared_image": prepared,
        "prep_time": 0.0021,
        "predictions": [0.41, 0.3, 0.1, 0.05, 0.04, 0.03, 0.03, 0.02, 0.01, 0.01],
        "result_class": 0,
        "result_probability": 0.41,
        "predict_time": 0.0004,
    }


def test_reference_image_round_trips_key_for_key():
    ref = reference_image()
    msg = parse_message(json.dumps(ref).encode())
    assert isinstance(msg, UncertainImage)
    assert msg.id is None and msg.prepared_image.dtype == np.uint8 and msg.prepared_image[14, 14] == 255
    out = json.loads(msg.to_json())
    assert out == ref


def test_reference_metrics_round_trip_key_for_key():
    msg = parse_message(json.dumps(REFERENCE_METRICS))
    assert isinstance(msg, MetricsMessage)
    assert msg.total == 13
    out = json.loads(msg.to_json())
    assert out == REFERENCE_METRICS


def test_added_keys_survive_round_trip():
    counts = CameraCounts(tuple([1] * 10 + [0]), tuple([0] * 11))
    m = MetricsMessage(
        {"Cam-h": counts},
        utc_timestamp(),
        EdgeConfig(),
        LatencyStats.of([0.1, 0.2]),
        LatencyStats.of([]),
        id="Cam-h/r1/m3",
        model_version="m-1",
        window_start=utc_timestamp(1.7e9),
        window_end=utc_timestamp(1.7e9 + 10),
        images=10,
        outbox=OutboxStats(4, 2),
        labelled=10,
        correct=8,
        model_refused=(ModelRefusal("m-2", "sha256 mismatch"),),
    )
    back = MetricsMessage.from_json(m.to_json())
    assert back.to_dict() == m.to_dict()
    assert back.outbox == OutboxStats(4, 2) and back.images == 10 and back.id == "Cam-h/r1/m3"
    assert back.accuracy == 0.8 and back.model_refused == (ModelRefusal("m-2", "sha256 mismatch"),)
    with pytest.raises(SchemaError, match="'correct'"):
        MetricsMessage.from_dict({**m.to_dict(), "correct": 11})
    img = UncertainImage.from_dict(
        {**reference_image(), "id": "x/1", "true_class": 3, "model_version": "m-1"}
    )
    assert json.loads(img.to_json())["true_class"] == 3


def test_latency_stats_of_samples():
    s = LatencyStats.of(np.arange(1, 101, dtype=float))
    assert (s.min, s.max, s.mean) == (1.0, 100.0, 50.5)
    assert s.percentiles[0] == pytest.approx(50.5) and len(s.percentiles) == 4


def test_timestamp_form():
    assert utc_timestamp(0.5) == "1970-01-01T00:00:00.500000Z"


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda m: m.pop("count"), "'count' is missing"),
        (lambda m: m.update(count="3"), "'count' must be an integer"),
        (lambda m: m.update(predictions=[0.1] * 9), "'predictions'"),
        (lambda m: m.update(prepared_image=[[0] * 28] * 27), "'prepared_image'"),
        (lambda m: m.update(prepared_image=[[300] * 28] * 28), "0..255"),
        (lambda m: m.update(result_class=10), "'result_class'"),
        (lambda m: m.update(result_probability=1.5), "'result_probability'"),
        (lambda m: m.update(prep_time=float("nan")), "not JSON"),
        (lambda m: m.update(timestamp="yesterday"), "'timestamp'"),
    ],
)
def test_bad_images_raise_schema_error_naming_key_and_origin(mutate, needle):
    m = reference_image()
    mutate(m)
    with pytest.raises(SchemaError, match=needle) as info:
        parse_message(json.dumps(m).replace("NaN", "1e999"), Origin("events", 2, 41))
    assert "events[2]@41" in str(info.value)


@pytest.mark.parametrize("data", [b"\xff\xfe", b"not json", b"[1,2]", b"{}", b"x" * 1_000_001])
def test_not_a_message(data):
    with pytest.raises(SchemaError):
        parse_message(data)


def test_bad_metrics_counts():
    bad = json.loads(json.dumps(REFERENCE_METRICS))
    bad["camera_metrics"]["Camera-host1"]["certain"] = [1] * 10
    with pytest.raises(SchemaError, match="11 integers 0..1000000000"):
        parse_message(json.dumps(bad))


def test_image_bytes_rejects_bad_base64():
    m = UncertainImage.from_dict({**reference_image(), "image": "***"})
    with pytest.raises(SchemaError, match="base64"):
        m.image_bytes()


@pytest.mark.parametrize(
    "extra",
    [
        {"images": 10, "labelled": 1000, "correct": 0},  # more labelled than scored
        {"labelled": 2**53 - 1, "correct": 0},  # no images key: bounded by the window's counts
        {"images": 13, "labelled": 14},
    ],
)
def test_labelled_is_bounded_by_the_images_of_the_window(extra):
    with pytest.raises(SchemaError, match="labelled"):
        parse_message(json.dumps({**REFERENCE_METRICS, **extra}))


def test_labelled_up_to_the_images_of_the_window_is_kept():
    m = parse_message(json.dumps({**REFERENCE_METRICS, "images": 13, "labelled": 13, "correct": 12}))
    assert isinstance(m, MetricsMessage)
    assert (m.labelled, m.correct) == (13, 12)
