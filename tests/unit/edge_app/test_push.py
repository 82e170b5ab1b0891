"""HTTP push without Kafka: parsing of pushes, and the feed that merges them into the camera's stream."""

import base64
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from edge_app.http import MAX_IMAGES, BadRequest, parse_frames, parse_range
from edge_app.push import EdgeStopped, PushFeed
from edge_app.stages import FrameBatch, Scored


def _png(v: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((28, 28), v, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_one_png_body_or_json_with_labels():
    assert parse_frames(_png(), "image/png").frames == (_png(),)
    body = json.dumps({"images": [base64.b64encode(_png(i)).decode() for i in (1, 2)], "labels": [3, 4]})
    push = parse_frames(body.encode(), "application/json")
    assert push.frames == (_png(1), _png(2)) and push.labels == (3, 4)


@pytest.mark.parametrize(
    ("body", "ctype", "status", "why"),
    [
        (b"", "image/png", 400, "empty body"),
        (b"\x89PNG\r\n\x1a\nnot really a png", "image/png", 400, "not a readable PNG"),
        (b"GIF89a....", "image/gif", 400, "not a PNG"),
        (b"{oops", "application/json", 400, "not JSON"),
        (b'{"images": []}', "application/json", 400, "non-empty list"),
        (b'{"images": ["%%"]}', "application/json", 400, "is not valid base64"),
        (
            json.dumps({"images": [base64.b64encode(_png()).decode()], "labels": [1, 2]}).encode(),
            "application/json",
            400,
            "one per image",
        ),  # fmt: skip
        (json.dumps({"images": ["x"] * (MAX_IMAGES + 1)}).encode(), "application/json", 413, "more than"),
    ],
)
def test_bad_frames_are_refused_with_a_reason(body, ctype, status, why):
    with pytest.raises(BadRequest, match=why) as info:
        parse_frames(body, ctype)
    assert info.value.status == status


def test_range_parameters():
    assert parse_range({"start_idx": ["0"], "end_idx": ["100"]}, "bundled") == (0, 100, "bundled")
    assert parse_range({"start_idx": ["5"], "end_idx": ["6"], "source": ["digits"]}, "bundled")[2] == "digits"
    for params, why in [
        ({"end_idx": ["3"]}, "missing start_idx"),
        ({"start_idx": ["a"], "end_idx": ["3"]}, "must be an integer"),
        ({"start_idx": ["3"], "end_idx": ["3"]}, "start_idx < end_idx"),
        ({"start_idx": ["-1"], "end_idx": ["3"]}, "0 <= start_idx"),
    ]:
        with pytest.raises(BadRequest, match=why):
            parse_range(params, "bundled")


def _scored(batch: FrameBatch) -> Scored:
    n = len(batch)
    probs = np.tile(np.eye(10)[3] * 0.9 + 0.01, (n, 1))
    return Scored(np.arange(n), np.zeros((n, 28, 28), np.uint8), probs, 0.0, 0.0, (), "m-1")


def _enrich(batch: FrameBatch, first: int) -> FrameBatch:
    return FrameBatch(batch.frames, batch.labels, batch.emitted, first, "Cam-h", "run")


def test_pushes_merge_with_the_camera_and_are_answered_in_order():
    feed = PushFeed(batch_size=2)
    stop = threading.Event()
    camera = iter([FrameBatch((b"c0",), None, np.zeros(1))])
    pushed = feed.submit([b"p0", b"p1", b"p2"], [1, 2, 3])
    merged = feed.merge(camera, stop)
    seen, count = [], 0
    for batch in merged:
        batch = _enrich(batch, count)
        count += len(batch)
        seen.append(batch.frames)
        feed(batch, _scored(batch), [])
        if pushed.done() and any(b"c0" in f for f in seen):
            stop.set()
    answer = pushed.result(timeout=1).to_dict()
    assert sorted(seen) == sorted([(b"c0",), (b"p0", b"p1"), (b"p2",)])
    assert answer["count"] == 3 and answer["model_version"] == "m-1" and answer["camera"] == "Cam-h"
    assert [r["true_class"] for r in answer["results"]] == [1, 2, 3]
    assert all(r["result_class"] == 3 and r["id"].startswith("Cam-h/run/") for r in answer["results"])


def test_a_stopped_edge_fails_pending_and_later_pushes():
    feed = PushFeed()
    pending = feed.submit([b"p0"])
    feed.close()
    with pytest.raises(EdgeStopped):
        pending.result(timeout=1)
    with pytest.raises(EdgeStopped):
        feed.submit([b"p1"]).result(timeout=1)
