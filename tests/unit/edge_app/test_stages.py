"""Edge stages on small hand-made batches: counts, the uncertain filter, metrics windows, the source."""

import base64
import json

import numpy as np
import pytest

from edge_app import stages
from edge_app.stages import (
    Enricher,
    FrameBatch,
    ImageSource,
    MetricsWindow,
    Scored,
    UncertainFilter,
    camera_name,
)
from edgemnist.data import Frames
from edgemnist.wire.messages import EdgeConfig, OutboxStats, parse_message


def scored_for(probs: np.ndarray, index=None) -> Scored:
    n = len(probs)
    prepared = np.zeros((n, 28, 28), dtype=np.uint8)
    return Scored(
        np.arange(n) if index is None else np.asarray(index),
        prepared,
        probs,
        0.001,
        0.0002,
        model_version="m-test",
    )


def onehot(classes, p):
    probs = np.full((len(classes), 10), (1 - p) / 9)
    probs[np.arange(len(classes)), classes] = p
    return probs


def batch_of(n: int, camera: str = "Cam-h", first: int = 0) -> FrameBatch:
    frames = tuple(f"frame{i}".encode() for i in range(n))
    return FrameBatch(frames, np.arange(n) % 10, np.full(n, 1.6e9), first, camera, "run1")


def test_camera_name_and_enricher_counts_run_on():
    assert camera_name("Camera", "host1") == "Camera-host1"
    with Enricher("Cam", hostname="h") as enrich:
        a = enrich(batch_of(3, camera=""))
        b = enrich(batch_of(2, camera=""))
    assert (a.first_count, b.first_count, a.camera, a.run_id == b.run_id) == (0, 3, "Cam-h", True)


def test_uncertain_filter_sends_at_or_below_threshold_with_all_keys():
    probs = np.vstack([onehot([1], 0.95), onehot([2], 0.70), onehot([3], 0.5)])
    batch = batch_of(3, first=10)
    sent = UncertainFilter(0.70)(batch, scored_for(probs))
    assert [m.count for m in sent] == [11, 12]
    msg = json.loads(sent[0].to_json())
    assert msg["result_class"] == 2 and msg["result_probability"] == pytest.approx(0.70)
    assert base64.b64decode(msg["image"]) == b"frame1" and msg["true_class"] == 1
    assert msg["id"] == "Cam-h/run1/11" and msg["timestamp"].endswith("Z")
    assert parse_message(sent[1].to_json()).count == 12


def test_test_cameras_send_everything_and_skipped_frames_keep_their_counts():
    probs = onehot([4, 5], 0.99)
    sent = UncertainFilter(0.70)(batch_of(3, camera="TestCam-h"), scored_for(probs, index=[0, 2]))
    assert [m.count for m in sent] == [0, 2] and [m.result_class for m in sent] == [4, 5]


def test_metrics_window_counts_certain_and_uncertain_per_digit():
    w = MetricsWindow(10, EdgeConfig(metrics_duration=10), confidence=0.7)
    w.add(scored_for(onehot([1, 1, 2], 0.9)))
    w.add(scored_for(onehot([2, 9], 0.6)))
    assert not w.due(w._start + 5) and w.due(w._start + 10)
    m = w.close(w._start + 10, "Cam-h", "run1", OutboxStats(3, 1), "m-test")
    c = m.camera_metrics["Cam-h"]
    assert c.certain == (0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0)
    assert c.uncertain == (0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0)
    assert m.images == 5 and m.outbox == OutboxStats(3, 1) and m.prep.mean == pytest.approx(0.001)
    assert json.loads(m.to_json())["config"]["metrics_duration"] == 10
    assert w.close(w._start + 20, "Cam-h", "run1", None, None) is None  # empty window: nothing


def test_image_source_batches_and_repeats(monkeypatch):
    frames = Frames("fake", tuple(f"f{i}".encode() for i in range(10)), np.arange(10))
    monkeypatch.setattr(stages, "load_frames", lambda source: frames)
    with ImageSource("fake", repeat=3, batch_size=4) as src:
        batches = list(src())
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4, 4, 4, 2]
    assert sum(len(b) for b in batches) == 30
    assert list(batches[2].labels) == [8, 9, 0, 1] and batches[2].frames[2] == b"f0"


def test_image_source_with_delay_flushes_small_batches(monkeypatch):
    frames = Frames("fake", tuple(f"f{i}".encode() for i in range(6)), None)
    monkeypatch.setattr(stages, "load_frames", lambda source: frames)
    with ImageSource("fake", repeat=1, delay=0.03, batch_size=100, max_wait=0.05) as src:
        sizes = [len(b) for b in src()]
    assert sum(sizes) == 6 and len(sizes) >= 2 and max(sizes) <= 3


def test_metrics_window_counts_labelled_and_correct_over_every_image():
    w = MetricsWindow(10, EdgeConfig(), confidence=0.7)
    # batch 1: classes 1, 1, 2 (certain); truth 1, 7, 2 -> 2 right; frame 1 of 4 was not preparable
    w.add(scored_for(onehot([1, 1, 2], 0.9), index=[0, 2, 3]), labels=np.array([1, 5, 7, 2]))
    # batch 2: uncertain images count too
    w.add(scored_for(onehot([4, 9], 0.5)), labels=np.array([4, 4]))
    m = w.close(w._start + 10, "Cam-h", "run1", None, "m-test")
    assert (m.images, m.labelled, m.correct, m.accuracy) == (5, 5, 3, 0.6)
    assert json.loads(m.to_json())["labelled"] == 5 and parse_message(m.to_json()).correct == 3


def test_metrics_window_without_labels_sends_no_accuracy_and_carries_refusals():
    from edgemnist.wire.messages import ModelRefusal

    w = MetricsWindow(10, EdgeConfig())
    w.add(scored_for(onehot([3], 0.9)))
    m = w.close(w._start + 10, "Cam-h", "run1", None, "m-test", (ModelRefusal("m-bad", "sha256 mismatch"),))
    d = json.loads(m.to_json())
    assert "labelled" not in d and "correct" not in d and m.accuracy is None
    assert d["model_refused"] == [{"version": "m-bad", "reason": "sha256 mismatch"}]
    w.add(scored_for(onehot([3], 0.9)))
    assert "model_refused" not in json.loads(w.close(w._start + 10, "Cam-h", "r", None, "m").to_json())
