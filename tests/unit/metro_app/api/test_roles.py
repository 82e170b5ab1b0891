"""People and roles on the API (issue 21): 401 and 403 for each role on each write, before the body is read;
reads with a tokens file; the labeller from the token; the audit trail; the single shared token unchanged."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from metro_app.access import AccessGate, TokenFile, add_person
from metro_app.api.app import create_app
from metro_app.samples import make_image
from metro_app.testing import scored_window
from metro_app.training.jobs import RetrainJobs
from metro_app.training.retrain import RetrainResult

ROLES = ("viewer", "labeller", "operator")
IMAGE = "CamA/r1/i0"

# each write route, the role it needs, and a body it would accept
WRITES = [
    ("/labels", "labeller", {"image_id": IMAGE, "label": "3"}),
    ("/labels/resolve", "operator", {"image_id": IMAGE, "label": "3"}),
    ("/models/retrain", "operator", {}),
    ("/models/m-2/rollout", "operator", {"canary": ["CamA"]}),
]
READS = ["/views", "/views/UncertainPredictions", "/cameras", f"/images/{IMAGE}", "/labels", "/labellers",
         "/labels/conflicts", "/alerts", "/models", "/models/m-2", "/models/m-2/file", "/rollouts", "/whoami"]  # fmt: skip


@pytest.fixture
def hub_store(store):
    store.write_batch([scored_window("CamA-h", 1, "m-1")], [make_image("CamA", i) for i in range(2)])
    store.add_model("m-1", "0" * 64, b"1", status="published", reason="initial")
    store.add_model("m-2", "1" * 64, b"2", parent="m-1", reason="trained")
    return store


@pytest.fixture
def people(tmp_path):
    """A tokens file with one person per role; returns (path, role -> token)."""
    path = tmp_path / "tokens.json"
    return path, {role: add_person(path, f"{role}-1", role) for role in ROLES}


def _app(store, path, public_reads=False):
    jobs = RetrainJobs(lambda progress: RetrainResult("m-3", "m-1", False, "refused: a fake retrain"))
    gate = AccessGate(tokens=TokenFile(path), public_reads=public_reads)
    return create_app(store, gate=gate, retrain=jobs)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("route", "needs", "body"), WRITES, ids=[w[0] for w in WRITES])
@pytest.mark.parametrize("role", [None, "bad", *ROLES])
def test_each_write_route_answers_each_role(hub_store, people, route, needs, body, role):
    path, tokens = people
    headers = {} if role is None else bearer(tokens.get(role, "emt_not-a-token"))
    with TestClient(_app(hub_store, path)) as c:
        r = c.post(route, json=body, headers=headers)
    if role in (None, "bad"):
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    elif ROLES.index(role) < ROLES.index(needs):
        assert r.status_code == 403 and f"needs the {needs} role" in r.json()["detail"]
    else:
        assert r.status_code in (201, 202), r.text


@pytest.mark.parametrize(("route", "needs", "body"), WRITES, ids=[w[0] for w in WRITES])
def test_a_role_too_small_is_refused_before_the_body_is_read(hub_store, people, route, needs, body):
    path, tokens = people
    too_small = ROLES[ROLES.index(needs) - 1]
    big = b"x" * (64 * 1024)
    app = create_app(hub_store, gate=AccessGate(tokens=TokenFile(path)), max_body=1024)
    with TestClient(app) as c:
        r = c.post(
            route, content=big, headers=bearer(tokens[too_small]) | {"content-type": "application/json"}
        )
        assert r.status_code == 403  # not 413: the body was never looked at
        assert c.post(route, content=big, headers={"content-type": "application/json"}).status_code == 401


@pytest.mark.parametrize("route", READS)
def test_with_a_tokens_file_reads_need_a_viewer_token(hub_store, people, route):
    path, tokens = people
    with TestClient(_app(hub_store, path)) as c:
        assert c.get(route).status_code == 401
        assert c.get(route, headers=bearer("emt_nobody")).status_code == 401
        assert c.get(route, headers=bearer(tokens["viewer"])).status_code == 200
    with TestClient(_app(hub_store, path, public_reads=True)) as c:
        assert c.get(route).status_code == 200


def test_health_and_the_api_description_stay_open_and_the_audit_needs_an_operator(hub_store, people):
    path, tokens = people
    with TestClient(_app(hub_store, path)) as c:
        assert c.get("/health").status_code == 200 and c.get("/openapi.json").status_code == 200
        assert c.get("/audit").status_code == 401
        assert c.get("/audit", headers=bearer(tokens["labeller"])).status_code == 403
        assert c.get("/audit", headers=bearer(tokens["operator"])).status_code == 200
    with TestClient(_app(hub_store, path, public_reads=True)) as c:
        assert c.get("/audit").status_code == 401  # public reads do not open the audit trail


def test_the_labeller_is_the_tokens_person_not_the_body(hub_store, people):
    path, tokens = people
    with TestClient(_app(hub_store, path)) as c:
        mine = c.post("/labels", json={"image_id": IMAGE, "label": "5"}, headers=bearer(tokens["labeller"]))
        assert mine.status_code == 201 and mine.json()["labeller"] == "labeller-1"
        assert mine.json()["verified"] is True
        same = {"image_id": IMAGE, "label": "6", "labeller": "labeller-1"}
        assert c.post("/labels", json=same, headers=bearer(tokens["labeller"])).status_code == 201
        other = {"image_id": IMAGE, "label": "7", "labeller": "operator-1"}
        r = c.post("/labels", json=other, headers=bearer(tokens["labeller"]))
        assert (
            r.status_code == 403
            and "'operator-1' is not the token's person 'labeller-1'" in r.json()["detail"]
        )
        ruled = {"image_id": IMAGE, "label": "5", "resolver": "someone"}
        assert c.post("/labels/resolve", json=ruled, headers=bearer(tokens["operator"])).status_code == 403
    assert [(x["label"], x["labeller"]) for x in hub_store.labels()] == [
        ("5", "labeller-1"),
        ("6", "labeller-1"),
    ]


def test_every_write_is_audited_with_person_route_and_outcome(hub_store, people):
    path, tokens = people
    with TestClient(_app(hub_store, path)) as c:
        c.post("/labels", json={"image_id": IMAGE, "label": "5"}, headers=bearer(tokens["labeller"]))
        c.post("/labels", json={"image_id": "nope", "label": "5"}, headers=bearer(tokens["labeller"]))
        c.post("/models/retrain", json={}, headers=bearer(tokens["labeller"]))
        c.post("/models/m-2/rollout", json={"canary": ["CamA"]}, headers=bearer(tokens["operator"]))
        c.post("/labels", json={"image_id": IMAGE, "label": "5"})  # anonymous: refused, not stored
        rows = c.get("/audit", headers=bearer(tokens["operator"])).json()["audit"]
        assert (
            c.get("/audit?person=operator-1", headers=bearer(tokens["operator"])).json()["audit"] == rows[3:]
        )
    got = [(r["person"], r["role"], r["route"], r["status"], r["outcome"]) for r in rows]
    assert got == [
        ("labeller-1", "labeller", "POST /labels", 201, "done"),
        ("labeller-1", "labeller", "POST /labels", 404, "failed"),
        ("labeller-1", "labeller", "POST /models/retrain", 403, "refused"),
        ("operator-1", "operator", "POST /models/{version}/rollout", 201, "done"),
    ]
    assert rows[0]["detail"] == {"image_id": IMAGE, "label": "5", "labeller": "labeller-1"}
    assert rows[3]["path"] == "/models/m-2/rollout" and rows[3]["detail"]["canary"] == ["CamA"]
    assert all(r["verified"] for r in rows) and rows[0]["time"].endswith("Z")
    assert hub_store.rollout_book().list()[0]["trigger"] == "POST /models/m-2/rollout by operator-1"


def test_the_single_shared_token_keeps_todays_behaviour(hub_store):
    with TestClient(create_app(hub_store, token="shared")) as c:
        assert c.get("/labels").status_code == 200 and c.get("/views").status_code == 200  # open reads
        body = {"image_id": IMAGE, "label": "4", "labeller": "station-7"}
        assert c.post("/labels", json=body).status_code == 401
        r = c.post("/labels", json=body, headers=bearer("shared"))
        assert r.status_code == 201 and r.json()["labeller"] == "station-7" and r.json()["verified"] is False
        missing = c.post("/labels", json={"image_id": IMAGE, "label": "4"}, headers=bearer("shared"))
        assert missing.status_code == 422 and "labeller" in missing.json()["detail"]
        ok = c.post("/models/m-2/rollout", json={"canary": ["CamA"]}, headers=bearer("shared"))
        assert ok.status_code == 201 and ok.json()["trigger"] == "POST /models/m-2/rollout"
        me = c.get("/whoami", headers=bearer("shared")).json()
        assert me == {"person": {"name": "default", "role": "operator", "verified": False}, "mode": "token",
                      "public_reads": True}  # fmt: skip
        assert c.get("/whoami").json()["person"] is None
        rows = c.get("/audit", headers=bearer("shared")).json()["audit"]
    assert [r["status"] for r in rows] == [201, 422, 201]
    row = rows[0]
    assert (row["person"], row["role"], row["verified"], row["detail"]["labeller"]) == (
        "default", "operator", False, "station-7")  # fmt: skip


def test_a_retrain_a_person_started_names_them_on_its_model_and_in_the_models_panel(hub_store, people):
    from metro_app.dashboard.models import models_table_html

    path, tokens = people

    def run(progress):
        hub_store.add_model("m-3", "3" * 64, b"3", parent="m-2", reason="trained")
        return RetrainResult("m-3", "m-2", False, "refused: a fake retrain")

    jobs = RetrainJobs(run)
    app = create_app(hub_store, gate=AccessGate(tokens=TokenFile(path)), retrain=jobs)
    with TestClient(app) as c:
        assert c.post("/models/retrain", headers=bearer(tokens["operator"])).status_code == 202
        jobs.join(10)
        m3 = c.get("/models/m-3", headers=bearer(tokens["viewer"])).json()
    [event] = [e for e in m3["events"] if e["status"] == "started_by"]
    assert event["reason"].endswith("started by operator-1")
    table = models_table_html([m3], [])
    assert (
        'class="metro-started-by">retrain' in table and "operator-1" in table and "started_by " not in table
    )
