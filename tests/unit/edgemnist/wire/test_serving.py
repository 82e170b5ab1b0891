"""Parsing prediction requests: what is answered with scores, and what with an error naming the problem."""

import base64
import json

import numpy as np
import pytest

from edgemnist.testing.hostile import bomb_png
from edgemnist.wire.messages import MetricsMessage, Origin, ResultStats
from edgemnist.wire.serving import ImageResult, PredictRequest, PredictResponse, RequestError, parse_request

PNG = bomb_png(28, bits=8)  # a readable 28x28 frame: requests are checked like every PNG way in


def _req(**kw):
    return json.dumps({"id": "r1", "model": "latest", **kw}).encode()


def test_pixels_request_becomes_a_28x28_uint8_image():
    req = parse_request(_req(pixels=list(range(256)) + [0] * 528))
    assert req.id == "r1" and req.model == "latest" and req.png is None
    assert req.pixels.shape == (28, 28) and req.pixels.dtype == np.uint8 and req.pixels[0, 27] == 27


def test_image_request_keeps_the_png_bytes_and_model_defaults_to_latest():
    body = json.dumps({"id": "r2", "image": base64.b64encode(PNG).decode()}).encode()
    req = parse_request(body)
    assert req.png == PNG and req.model == "latest"
    assert parse_request(req.to_json()).png == PNG


@pytest.mark.parametrize(
    ("body", "why", "rid"),
    [
        (b"{nope", "not JSON", "key-1"),
        (b"[1]", "expected an object", "key-1"),
        (json.dumps({"model": "latest", "pixels": [0] * 784}).encode(), "'id'", "key-1"),
        (_req(pixels=[0] * 10), "784 integers", "r1"),
        (_req(pixels=[256] * 784), "0..255", "r1"),
        (_req(pixels=[0.5] * 784), "only integers", "r1"),
        (_req(image="%%%"), "not valid base64", "r1"),
        (_req(image=base64.b64encode(b"GIF89a").decode()), "not a PNG", "r1"),
        (_req(image=base64.b64encode(bomb_png(20000)).decode()), "20000x20000 PNG; each side must be", "r1"),
        (_req(image=base64.b64encode(PNG[:-20]).decode()), "not a readable PNG", "r1"),
        (_req(), "exactly one of", "r1"),
        (_req(image=base64.b64encode(PNG).decode(), pixels=[0] * 784), "exactly one of", "r1"),
        (_req(model=""), "'model'", "r1"),
        (None, "tombstone", "key-1"),
    ],
)
def test_bad_requests_name_the_problem_and_keep_the_id(body, why, rid):
    with pytest.raises(RequestError, match=why) as info:
        parse_request(body, Origin("req", 0, 7), key=b"key-1")
    assert info.value.request_id == rid and "req[0]@7" in str(info.value)


def test_response_shapes():
    ok = PredictResponse("r1", "m-1", tuple([0.05] * 9 + [0.55]))
    d = json.loads(ok.to_json())
    assert d == {"id": "r1", "model_version": "m-1", "predictions": [0.05] * 9 + [0.55],
                 "result_class": 9, "result_probability": 0.55}  # fmt: skip
    assert json.loads(PredictResponse.failed("r2", "unknown model 'x'").to_json()) == {
        "id": "r2",
        "error": "unknown model 'x'",
    }
    assert PredictResponse.from_json(ok.to_json()).predictions == ok.predictions


def test_image_result_is_compact_and_metrics_carry_result_counts():
    r = ImageResult("Cam-h/run/3", "Cam-h", 3, "2020-01-01T00:00:00.000000Z", 7, 0.9, "m-1", 7)
    assert set(json.loads(r.to_json())) == {"id", "camera", "count", "timestamp", "result_class",
                                             "result_probability", "model_version", "true_class"}  # fmt: skip
    from metro_app.samples import make_metrics

    base = json.loads(make_metrics("Cam-h", 1).to_json())
    back = MetricsMessage.from_json(json.dumps({**base, "results": {"acked": 5, "failed": 1, "pending": 2}}))
    assert back.results == ResultStats(5, 1, 2)
    assert json.loads(back.to_json())["results"] == {"acked": 5, "failed": 1, "pending": 2}
    with pytest.raises(Exception, match="acked"):
        MetricsMessage.from_json(json.dumps({**base, "results": {"acked": -1, "failed": 0, "pending": 0}}))


def test_request_roundtrip_of_pixels():
    px = np.arange(784, dtype=np.int64) % 256
    req = PredictRequest("a", "latest", pixels=px.astype(np.uint8).reshape(28, 28))
    assert np.array_equal(parse_request(req.to_json()).pixels.ravel(), px)
