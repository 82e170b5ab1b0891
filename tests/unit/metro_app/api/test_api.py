"""Hub HTTP API through FastAPI's TestClient: shapes, auth, 404, 422, long-poll."""

import threading
import time

import pytest
from fastapi.testclient import TestClient

from metro_app.api.app import create_app
from metro_app.samples import make_image, make_metrics, png_frame

TOKEN = "s3cret-token"


@pytest.fixture
def api_store(store):
    """Three metrics windows and four uncertain images of CamA."""
    store.write_batch([make_metrics("CamA", i) for i in range(3)], [make_image("CamA", i) for i in range(4)])
    return store


@pytest.fixture
def client(api_store):
    with TestClient(create_app(api_store, token=TOKEN, health=lambda: {"lag": 4, "records": 7})) as c:
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


def test_long_poll_returns_as_soon_as_something_newer_exists(client, api_store):
    def later():
        time.sleep(0.5)
        api_store.write_batch([make_metrics("CamA", 10)], [])

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


def test_without_a_configured_token_posting_is_refused(api_store):
    with TestClient(create_app(api_store, token=None)) as c:
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


# the model registry and retrain jobs ---------------------------------------------------------------

import threading as _threading  # noqa: E402

from metro_app.training.jobs import RetrainJobs  # noqa: E402
from metro_app.training.retrain import RetrainResult  # noqa: E402


def test_models_list_card_and_file(api_store):
    api_store.add_model("m-1", "ab" * 32, b"PK-one", status="published", reason="initial", created=1.0)
    api_store.add_model("m-2", "cd" * 32, b"PK-two", parent="m-1", reason="accepted", created=2.0,
                    card={"base_accuracy": 0.96, "field_accuracy": 0.9, "parent_field_accuracy": 0.4})  # fmt: skip
    with TestClient(create_app(api_store, token=TOKEN)) as c:
        models = c.get("/models").json()["models"]
        assert [m["version"] for m in models] == ["m-2", "m-1"]
        assert {"version", "parent", "status", "sha256", "created", "base_accuracy", "field_accuracy",
                "parent_base_accuracy", "parent_field_accuracy", "reason", "n_train", "n_field_train",
                "n_field_test", "events"} <= models[0].keys()  # fmt: skip
        assert models[0]["field_accuracy"] == 0.9 and models[0]["events"][0]["status"] == "candidate"
        assert c.get("/models/m-2").json()["parent"] == "m-1"
        r = c.get("/models/m-1/file")
        assert r.status_code == 200 and r.content == b"PK-one"
        assert r.headers["content-type"] == "application/octet-stream"
        missing = c.get("/models/m-9")
        assert missing.status_code == 404 and "'m-9'" in missing.json()["detail"]
        assert c.get("/models/m-9/file").status_code == 404


def test_retrain_is_202_then_409_while_running_then_reports_its_result(api_store):
    release = _threading.Event()

    def run(progress):
        progress("train", 3, 7)
        release.wait(10)
        return RetrainResult("m-3", "m-1", True, "accepted: field up", n_field_test=30, status="published")

    jobs = RetrainJobs(run)
    with TestClient(create_app(api_store, token=TOKEN, retrain=jobs)) as c:
        assert c.post("/models/retrain").status_code == 401
        first = c.post("/models/retrain", headers=auth())
        assert first.status_code == 202
        job = first.json()["job"]
        busy = c.post("/models/retrain", headers=auth())
        assert busy.status_code == 409 and job in busy.json()["detail"]
        release.set()
        jobs.join(10)
        done = c.get(f"/models/retrain/{job}").json()
        assert done["state"] == "done" and done["progress"] == 1.0
        assert done["result"]["version"] == "m-3" and done["result"]["accepted"] is True
        assert c.get("/models/retrain/r-nope").status_code == 404
        assert c.post("/models/retrain", headers=auth()).status_code == 202  # free again
        jobs.join(10)


def test_a_failed_retrain_job_reports_its_error(api_store):
    def run(progress):
        raise RuntimeError("disk full")

    jobs = RetrainJobs(run)
    job, started = jobs.start("test")
    jobs.join(10)
    assert started and jobs.get(job["id"])["state"] == "failed"
    assert "disk full" in jobs.get(job["id"])["error"] and jobs.running() is None


def test_retrain_without_jobs_configured_is_503(client):
    assert client.post("/models/retrain", headers=auth()).status_code == 503
