"""GET /rollouts/{id}/disagreements: what a person labels first while a candidate runs in shadow."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from metro_app.api.app import create_app
from metro_app.rollout.policy import Policy
from metro_app.samples import make_image
from metro_app.store import Store

TOKEN = "s3cret-token"


def disagreement(camera: str, n: int, serving: int, shadow: int):
    scores = tuple(0.9 if k == shadow else 0.1 / 9 for k in range(10))
    return dataclasses.replace(
        make_image(camera, n), result_class=serving, true_class=None,
        shadow_version="m-2", shadow_predicted=shadow, shadow_scores=scores,
    )  # fmt: skip


@pytest.fixture
def shadow_client(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    images = [disagreement("Line3-h", i, serving=1, shadow=7) for i in range(5)]
    store.write_batch([], [*images, disagreement("Line4-h", 9, 1, 7), make_image("Line3-h", 30)])
    store.rollout_book().add("m-2", "m-1", ["Line3"], Policy(), "test")
    with TestClient(create_app(store, token=TOKEN)) as c:
        yield c
    store.close()


def test_the_disagreements_of_the_canary_cameras_newest_first_then_labelled_with_post_labels(shadow_client):
    got = shadow_client.get("/rollouts/1/disagreements").json()
    ids = [i["image_id"] for i in got["items"]]
    assert ids == [f"Line3-h/r1/i{n}" for n in (4, 3, 2, 1, 0)]
    first = got["items"][0]
    assert {k: first[k] for k in ("image_id", "camera", "predicted", "shadow_predicted")} == {
        "image_id": "Line3-h/r1/i4", "camera": "Line3-h", "predicted": 1, "shadow_predicted": 7,
    }  # fmt: skip
    assert got["pairs"] == {
        "disagreements": 5, "labelled": 0, "candidate_right": 0, "serving_right": 0, "neither_right": 0,
    }  # fmt: skip
    for image_id, label in ((ids[0], "1"), (ids[1], "1"), (ids[2], "7")):
        r = shadow_client.post("/labels", json={"image_id": image_id, "label": label, "labeller": "ann"},
                        headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert r.status_code in (200, 201), r.text
    got = shadow_client.get("/rollouts/1/disagreements").json()
    assert got["pairs"]["serving_right"] == 2 and got["pairs"]["candidate_right"] == 1
    assert [i["label"] for i in got["items"]] == [1, 1, 7, None, None]


def test_after_pages_and_unknown_rollouts_are_404(shadow_client):
    items = shadow_client.get("/rollouts/1/disagreements").json()["items"]
    newer = shadow_client.get(f"/rollouts/1/disagreements?after={items[1]['seq']}&max=5").json()["items"]
    assert [i["image_id"] for i in newer] == [items[0]["image_id"]]
    assert len(shadow_client.get("/rollouts/1/disagreements?max=2").json()["items"]) == 2
    assert shadow_client.get("/rollouts/7/disagreements").status_code == 404
    assert shadow_client.get("/rollouts/1/disagreements?after=-1").status_code == 422
