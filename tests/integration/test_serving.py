"""Scoring on request against real Apache Kafka: HTTP push at the edge, the results topic, prediction requests."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from edgemnist.data import load_frames
from edgemnist.kafka import ensure_topics, make_producer
from edgemnist.model import load_model
from edgemnist.prep import prepare_batch
from edgemnist.wire.messages import MetricsMessage
from edgemnist.wire.serving import PredictResponse
from metro_app.testing import HubProcess, free_port, wait_until
from tests.helpers import edge_cmd, outbox_rows, read_topic, read_values, split

pytestmark = pytest.mark.integration


PUSH_TOKEN = "integration-push-token"  # pushes always need a token (issue 24.5)


def _post(url: str, body: bytes = b"", ctype: str = "application/octet-stream") -> tuple[int, dict]:
    headers = {"Content-Type": ctype, "Authorization": f"Bearer {PUSH_TOKEN}"}
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def test_http_push_scores_through_the_pipeline(kafka, kafka_settings, model_path, tmp_path, make_topic):
    topic = make_topic("events")
    port = free_port()
    # The camera's own source emits its first frame, then waits an hour: everything else is pushed.
    cmd = edge_cmd(kafka.bootstrap_servers, topic, model_path, tmp_path / "o.db", "TestPush",
                   "--delay", "3600", "--http-port", str(port))  # fmt: skip
    env = {**os.environ, "EDGE_MNIST_EDGE_TOKEN": PUSH_TOKEN}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(f"{base}/health"), 60, "the edge's HTTP port")
        status, answer = _post(f"{base}/push?start_idx=0&end_idx=100")
        bad_status, bad = _post(f"{base}/frames", b"\x89PNG\r\n\x1a\nnot really a png", "image/png")
        oob_status, oob = _post(f"{base}/push?start_idx=990&end_idx=1001")
        again_status, again = _post(f"{base}/push?start_idx=0&end_idx=5")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert status == 200 and answer["count"] == 100 and len(answer["results"]) == 100
    assert bad_status == 400 and "not a readable PNG" in bad["error"]
    assert oob_status == 400 and "out of bounds" in oob["error"]
    assert again_status == 200 and again["count"] == 5  # the edge went on after the bad ones

    frames = load_frames("bundled")
    expected = load_model(model_path).predict_proba(prepare_batch(frames.frames[:100]))
    got = np.array([r["predictions"] for r in answer["results"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert [r["result_class"] for r in answer["results"]] == expected.argmax(axis=1).tolist()

    ids = [r["id"] for r in answer["results"]]
    images, _ = split(read_topic(kafka_settings, topic, lambda ms: len(split(ms)[0]) >= 106))
    pushed = [m for m in images if m.id in set(ids)]
    assert [m.id for m in pushed] == ids  # exactly those 100, in order
    assert [m.true_class for m in pushed] == frames.labels[:100].tolist()
    assert [m.image_bytes() for m in pushed] == list(frames.frames[:100])
    assert len(images) == 1 + 100 + 5  # the camera's own first frame, the two pushes


def _results_run(
    kafka, kafka_settings, model_path, tmp_path, make_topic, camera: str, *extra: str, outage: bool = False
):
    topic, results_topic = make_topic("events"), make_topic("results")
    ensure_topics(kafka_settings, {topic: 1, results_topic: 1})
    outbox = tmp_path / "o.db"
    cmd = edge_cmd(kafka.bootstrap_servers, topic, model_path, outbox, camera,
                   "--results-topic", results_topic, *extra)  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if outage:
            read_values(kafka_settings, results_topic, 1)  # the edge is delivering
            with kafka.stopped():
                back = time.monotonic() + 10  # the outage lasts 10 s, and until results are buffered
                wait_until(
                    lambda: time.monotonic() >= back and outbox_rows(outbox), 120, "a backlog", every=0.2
                )
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    results = [json.loads(v) for v in read_values(kafka_settings, results_topic, 1000, settle=2)]
    _, metrics = split(read_topic(kafka_settings, topic, lambda ms: any(m.images and m.results and m.results.pending == 0 and m.results.acked >= 1000 for m in split(ms)[1])))  # fmt: skip
    return results, sorted(metrics, key=lambda m: m.window_end or "")


def test_results_topic_one_per_image_all_acked(kafka, kafka_settings, model_path, tmp_path, make_topic):
    results, metrics = _results_run(kafka, kafka_settings, model_path, tmp_path, make_topic, "ResCam")
    assert len(results) == 1000 and len({r["id"] for r in results}) == 1000
    assert sorted(r["count"] for r in results) == list(range(1000))
    labels = load_frames("bundled").labels
    assert all(r["true_class"] == int(labels[r["count"]]) for r in results)
    assert {"result_class", "result_probability", "model_version", "timestamp", "camera"} <= set(results[0])
    assert all(isinstance(m, MetricsMessage) and m.results is not None for m in metrics)
    assert metrics[-1].results.acked == 1000 and metrics[-1].results.pending == 0


def test_results_topic_loses_nothing_while_the_broker_is_down(
    restartable_kafka, kafka_settings, model_path, tmp_path, make_topic
):
    results, metrics = _results_run(
        restartable_kafka,
        kafka_settings,
        model_path,
        tmp_path,
        make_topic,
        "ResOut",
        "--delay",
        "0.02",
        outage=True,
    )
    assert len({r["id"] for r in results}) == 1000  # none lost (a resend after a lost ack may duplicate)
    assert sorted({r["count"] for r in results}) == list(range(1000))
    last = metrics[-1].results
    assert last.acked == 1000 and last.pending == 0
    assert any(m.results.pending > 0 for m in metrics[:-1]), "results should have waited in the outbox"


def _png_b64(frame: bytes) -> str:
    return base64.b64encode(frame).decode()


def test_prediction_requests_get_one_answer_each(kafka, kafka_settings, model_path, tmp_path, make_topic):
    req_topic, resp_topic = make_topic("requests"), make_topic("responses")
    frames = load_frames("bundled").frames
    model = load_model(model_path)
    png_frames, pixel_frames = frames[:240], frames[240:480]
    pixels = prepare_batch(pixel_frames)
    requests: list[tuple[str, bytes]] = []
    for i, f in enumerate(png_frames):
        requests.append(
            (f"png{i}", json.dumps({"id": f"png{i}", "model": "latest", "image": _png_b64(f)}).encode())
        )
    for i, p in enumerate(pixels):
        body = {"id": f"px{i}", "model": model.version, "pixels": p.ravel().tolist()}
        requests.append((f"px{i}", json.dumps(body).encode()))
    bad = {
        "bad-b64": {"id": "bad-b64", "model": "latest", "image": "@@not base64@@"},
        "bad-png": {"id": "bad-png", "model": "latest", "image": _png_b64(b"\x89PNG\r\n\x1a\ngarbage")},
        "bad-short": {"id": "bad-short", "model": "latest", "pixels": [1, 2, 3]},
        "bad-range": {"id": "bad-range", "model": "latest", "pixels": [300] * 784},
        "bad-both": {"id": "bad-both", "model": "latest"},
        "bad-model": {"id": "bad-model", "model": "no-such-model", "pixels": [0] * 784},
    }
    requests += [(k, json.dumps(v).encode()) for k, v in bad.items()]
    requests += [(f"bad-json{i}", b"{not json") for i in range(500 - len(requests))]
    assert len(requests) == 500
    hub = HubProcess(kafka.bootstrap_servers, make_topic("events"), f"sqlite:///{tmp_path}/hub.db",
                     tmp_path / "hub.log", extra=["--model", str(model_path), "--predict-requests", req_topic,
                                                  "--predict-responses", resp_topic])  # fmt: skip
    with hub:
        producer = make_producer(kafka_settings)
        for key, value in requests:
            producer.send(req_topic, value=value, key=key.encode())
        producer.flush(30)
        producer.close()
        raw = read_topic(kafka_settings, resp_topic, lambda ms: len(ms) >= 500, parse=lambda v: v, settle=2)
        health = hub.health()
    responses = {}
    for value in raw:
        resp = PredictResponse.from_json(value)
        responses[resp.id] = resp
    assert len(raw) == 500 and set(responses) == {k for k, _ in requests}
    expected_png = model.predict_proba(prepare_batch(png_frames))
    expected_px = model.predict_proba(pixels)
    got_png = np.array([responses[f"png{i}"].predictions for i in range(240)])
    got_px = np.array([responses[f"px{i}"].predictions for i in range(240)])
    np.testing.assert_allclose(got_png, expected_png, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_px, expected_px, rtol=0, atol=1e-9)
    assert {responses[f"png{i}"].model_version for i in range(240)} == {model.version}
    for key in [k for k, _ in requests if k.startswith("bad")]:
        assert responses[key].error and responses[key].predictions is None, key
    assert "unknown model 'no-such-model'" in responses["bad-model"].error
    assert "malformed image" in responses["bad-png"].error
    predict = health["consumer"]["predict"]
    assert predict["requests"] == 500 and predict["errors"] == 500 - 480
