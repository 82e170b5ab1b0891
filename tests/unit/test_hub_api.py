"""Hub HTTP API through FastAPI's TestClient: shapes, auth, 404, 422, long-poll."""

import threading
import time

import pytest
from fastapi.testclient import TestClient

from metro_app.api import create_app
from metro_app.samples import make_image, make_metrics, png_frame
from metro_app.store import Store

TOKEN = "s3cret-token"


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/hub.db")
    s.write_batch([make_metrics("CamA", i) for i in range(3)], [make_image("CamA", i) for i in range(4)])
    yield s
    s.close()


@pytest.fixture
def client(store):
    with TestClient(create_app(store, token=TOKEN, health=lambda: {"lag": 4, "records": 7})) as c:
        yield c


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def test_list_views(client):
    views = client.get("/views").json()["views"]
    by_name = {v["name"]: v for v in views}
    assert set(by_name) == {
        "ClassificationMetrics",
        "WindowUncertain",
        "UncertainPredictions",
        "FleetMetrics",
        "CameraHealth",
    }
    assert by_name["UncertainPredictions"]["size"] == 4 and by_name["ClassificationMetrics"]["last_seq"] == 3


def test_view_pages_ascend_and_page_through_everything(client):
    page = client.get("/views/UncertainPredictions?after=0&max=3").json()
    assert page["name"] == "UncertainPredictions" and page["last_seq"] == 4
    seqs = [it["seq"] for it in page["items"]]
    assert seqs == [1, 2, 3] and page["items"][0]["tuple"]["id"] == "CamA/r1/i0"
    rest = client.get(f"/views/UncertainPredictions?after={seqs[-1]}&max=3").json()["items"]
    assert [it["seq"] for it in rest] == [4]
    wins = client.get("/views/WindowUncertain").json()["items"]
    assert [len(w["tuple"]) for w in wins] == [1, 2, 3] and isinstance(wins[0]["tuple"], list)


def test_unknown_view_is_404(client):
    r = client.get("/views/NoSuchView")
    assert r.status_code == 404 and "NoSuchView" in r.json()["detail"]


def test_invalid_query_is_422_with_a_clear_message(client):
    r = client.get("/views/ClassificationMetrics?max=0")
    assert r.status_code == 422 and "max" in r.json()["message"]
    assert client.get("/views/ClassificationMetrics?after=abc").status_code == 422


def test_long_poll_returns_as_soon_as_something_newer_exists(client, store):
    def later():
        time.sleep(0.5)
        store.write_batch([make_metrics("CamA", 10)], [])

    threading.Thread(target=later).start()
    t0 = time.monotonic()
    page = client.get("/views/ClassificationMetrics?after=3&wait=20").json()
    assert [it["tuple"]["id"] for it in page["items"]] == ["CamA/r1/m10"]
    assert time.monotonic() - t0 < 20


def test_long_poll_times_out_empty(client):
    page = client.get("/views/ClassificationMetrics?after=3&wait=0.3").json()
    assert page["items"] == [] and page["last_seq"] == 3


def test_cameras_lists_health_fields(client):
    [cam] = client.get("/cameras").json()["cameras"]
    assert cam["name"] == "CamA" and cam["windows"] == 3 and cam["uncertain_images_stored"] == 4
    assert {
        "last_seen",
        "images_per_second",
        "uncertain_share",
        "accuracy",
        "prep_p99",
        "predict_p99",
        "outbox_pending",
        "departs_from_fleet",
    } <= set(cam)


def test_image_is_served_as_png(client):
    r = client.get("/images/CamA/r1/i2")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == png_frame(2)
    assert client.get("/images/nope").status_code == 404


def test_post_label_needs_the_bearer_token(client):
    body = {"image_id": "CamA/r1/i1", "label": "7", "labeller": "bars"}
    assert client.post("/labels", json=body).status_code == 401
    assert client.post("/labels", json=body, headers=auth("wrong")).status_code == 401
    assert client.post("/labels", json=body, headers={"Authorization": TOKEN}).status_code == 401
    r = client.post("/labels", json=body, headers=auth())
    assert r.status_code == 201
    stored = r.json()
    assert (
        stored["image_id"] == "CamA/r1/i1" and stored["label"] == "7" and stored["previous_prediction"] == 1
    )
    assert client.get("/labels").json()["labels"] == [stored]


def test_post_label_validation(client):
    r = client.post(
        "/labels", json={"image_id": "CamA/r1/i1", "label": "eight", "labeller": "b"}, headers=auth()
    )
    assert r.status_code == 422 and "label must be one of" in r.json()["message"]
    r = client.post(
        "/labels", json={"image_id": "CamA/r1/i1", "label": "Not a Digit", "labeller": "b"}, headers=auth()
    )
    assert r.status_code == 201
    r = client.post("/labels", json={"image_id": "missing", "label": "1", "labeller": "b"}, headers=auth())
    assert r.status_code == 404


def test_without_a_configured_token_posting_is_refused(store):
    with TestClient(create_app(store, token=None)) as c:
        r = c.post(
            "/labels", json={"image_id": "CamA/r1/i1", "label": "1", "labeller": "b"}, headers=auth("")
        )
        assert r.status_code == 401 and "EDGE_MNIST_API_TOKEN" in r.json()["detail"]


def test_health(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["consumer_lag"] == 4 and h["dlq"] == 0 and h["uptime"] >= 0
    assert h["stored"]["metrics"] == 3 and h["stored"]["images"] == 4


def test_openapi_is_served(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/views", "/views/{name}", "/cameras", "/labels", "/health"} <= set(paths)
