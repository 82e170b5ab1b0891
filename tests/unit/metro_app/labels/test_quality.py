"""Label quality: the settle rule, conflicts left out of retrain, agreement rates, the API and the station order."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from metro_app.api.app import create_app
from metro_app.labels.quality import camera_error_counts, labeller_stats
from metro_app.labels.settle import CONFLICT, settle_labels
from metro_app.samples import make_image, make_metrics
from metro_app.store import Store
from metro_app.testing import metrics_window
from metro_app.training.fieldset import build_field_set

TOKEN = "tok"


def votes(*rows):
    return [
        {"id": i + 1, "image_id": img, "label": lab, "labeller": who}
        for i, (img, lab, who) in enumerate(rows)
    ]


def test_the_settle_rule():
    rows = votes(
        ("a", "3", "ana"), ("a", "5", "bo"),  # disagree: conflict
        ("b", "1", "ana"), ("b", "1", "bo"),  # agree
        ("c", "2", "ana"), ("c", "7", "ana"),  # ana corrects herself: 7
        ("d", "4", "ana"), ("d", "9", "bo"), ("d", "9", "cy"),  # a third labeller breaks the tie
        ("e", "4", "ana"), ("e", "9", "bo"), ("e", "6", "cy"),  # three ways: still a conflict
    )  # fmt: skip
    s = settle_labels(rows)
    assert {k: v.label for k, v in s.items()} == {"a": None, "b": "1", "c": "7", "d": "9", "e": None}
    assert s["a"].votes == {"ana": "3", "bo": "5"}
    resolved = settle_labels(rows, [{"id": 1, "image_id": "a", "label": "5", "resolver": "lead"},
                                    {"id": 2, "image_id": "b", "label": "Other", "resolver": "lead"}])  # fmt: skip
    assert resolved["a"].label == "5" and resolved["a"].resolved_by == "lead"
    assert resolved["b"].label == "Other"  # a resolution is final, even against agreeing labellers


def test_agreement_rates_and_camera_error_counts():
    rows = votes(
        ("a", "3", "ana"), ("a", "5", "bo"), ("b", "1", "ana"), ("b", "1", "bo"),
        ("c", "7", "ana"), ("d", "9", "bo"), ("d", "9", "cy"), ("d", "4", "ana"),
    )  # fmt: skip
    settled = settle_labels(rows)
    stats = {s["labeller"]: s for s in labeller_stats(rows, settled)}
    assert (stats["ana"]["labels"], stats["ana"]["images"], stats["ana"]["compared"]) == (4, 4, 3)
    assert stats["ana"]["agreed"] == 1 and stats["ana"]["agreement"] == pytest.approx(1 / 3)
    assert stats["bo"]["agreement"] == pytest.approx(2 / 3) and stats["bo"]["conflicts"] == 1
    assert stats["cy"]["agreement"] == 1.0
    cams = camera_error_counts(
        settle_labels(
            votes(("x", "Camera Error", "ana"), ("y", "3", "ana"), ("z", "3", "ana"), ("z", "5", "bo"))
        ),  # fmt: skip
        {"x": "C1", "y": "C1", "z": "C1"},
    )
    assert cams == {"C1": (1, 2, 2)}  # the conflicted image counts nowhere


def test_conflicted_images_are_left_out_of_retrain_and_counted(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    imgs = [make_image("CamA", i) for i in range(4)]
    store.write_batch([], imgs)
    store.add_label(imgs[0].id, "3", "ana")
    store.add_label(imgs[0].id, "5", "bo")
    store.add_label(imgs[1].id, "1", "ana")
    store.add_label(imgs[2].id, "2", "ana")
    store.add_label(imgs[2].id, "8", "bo")
    rows = store.latest_labels()
    assert [(i, lab) for i, lab, _ in rows] == [
        (imgs[0].id, CONFLICT),
        (imgs[1].id, "1"),
        (imgs[2].id, CONFLICT),
    ]
    field = build_field_set(rows, share=0.0)
    assert field.train_ids == (imgs[1].id,) and field.excluded == {CONFLICT: 2}
    store.add_resolution(imgs[0].id, "5", "lead")
    store.add_label(imgs[2].id, "8", "cy")
    field = build_field_set(store.latest_labels(), share=0.0)
    assert set(field.train_ids) == {imgs[0].id, imgs[1].id, imgs[2].id} and field.excluded == {}
    assert sorted(field.train_labels.tolist()) == [1, 5, 8]
    store.close()


@pytest.fixture
def labels_client(store):
    """The API over a store with one metrics window and three images of CamA; `.store` is the store."""
    store.write_batch([make_metrics("CamA", 0)], [make_image("CamA", i) for i in range(3)])
    with TestClient(create_app(store, token=TOKEN)) as c:
        c.store = store
        yield c


def auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def test_labellers_conflicts_and_resolve_over_http(labels_client):
    a, b = make_image("CamA", 0).id, make_image("CamA", 1).id
    for image, label, who in ((a, "3", "ana"), (a, "5", "bo"), (b, "1", "ana"), (b, "1", "bo")):
        assert labels_client.post("/labels", json={"image_id": image, "label": label, "labeller": who},
                           headers=auth()).status_code == 201  # fmt: skip
    body = labels_client.get("/labellers").json()
    assert body["images"] == 2 and body["conflicts"] == 1
    assert {s["labeller"]: (s["labels"], s["agreement"]) for s in body["labellers"]} == {
        "ana": (2, 0.5), "bo": (2, 0.5)}  # fmt: skip
    assert labels_client.get("/labels/conflicts").json()["conflicts"] == [
        {"image_id": a, "votes": {"ana": "3", "bo": "5"}}
    ]
    r = labels_client.post("/labels/resolve", json={"image_id": a, "label": "5", "resolver": "lead"})
    assert r.status_code == 401  # writes need the token
    r = labels_client.post(
        "/labels/resolve", json={"image_id": a, "label": "5", "resolver": "lead"}, headers=auth()
    )
    assert r.status_code == 201 and r.json()["label"] == "5"
    assert labels_client.post("/labels/resolve", json={"image_id": "nope", "label": "5", "resolver": "x"},
                       headers=auth()).status_code == 404  # fmt: skip
    assert labels_client.post("/labels/resolve", json={"image_id": a, "label": "55", "resolver": "x"},
                       headers=auth()).status_code == 422  # fmt: skip
    assert labels_client.get("/labels/conflicts").json()["conflicts"] == []
    stats = {s["labeller"]: s["agreement"] for s in labels_client.get("/labellers").json()["labellers"]}
    assert stats == {"ana": 0.5, "bo": 1.0}


def test_cameras_show_open_alerts_and_held_back(labels_client):
    store = labels_client.store
    rng = np.random.default_rng(0)
    msgs = [metrics_window("CamB", n, 100, int(rng.binomial(100, 0.02))) for n in range(3)]
    store.write_batch([*msgs[:2], with_held_back(msgs[2], 9)], [])
    key = store.add_alert("CamB|uncertain_share|w", "CamB", "uncertain_share", "2026-01-01T00:00:00Z",
                          "camera CamB: uncertain share up", {"before_mean": 0.02, "after_mean": 0.2})  # fmt: skip
    assert key is not None
    assert store.add_alert("CamB|uncertain_share|w2", "CamB", "uncertain_share", "", "again", {}) is None
    cams = {c["name"]: c for c in labels_client.get("/cameras").json()["cameras"]}
    assert cams["CamA"]["alerts"] == [] and cams["CamB"]["held_back"] == 9
    [alert] = cams["CamB"]["alerts"]
    assert alert["signal"] == "uncertain_share" and alert["evidence"]["after_mean"] == 0.2
    assert labels_client.get("/alerts?status=open").json()["alerts"][0]["key"] == "CamB|uncertain_share|w"
    assert labels_client.get("/alerts?status=closed").json()["alerts"] == []
    assert labels_client.get("/alerts?status=maybe").status_code == 422


def with_held_back(msg, n):
    from dataclasses import replace

    return replace(msg, held_back=n)


def test_station_orders_and_dashboard_banner():
    from metro_app.dashboard.monitor import alert_banner_html, camera_table_html
    from metro_app.dashboard.station import ORDERS, labellers_html, order_items

    items = [
        {"id": "new", "result_probability": 0.6, "predictions": [0.6, 0.35] + [0.005] * 8},
        {"id": "mid", "result_probability": 0.4, "predictions": [0.4, 0.1] + [0.0625] * 8},
        {"id": "old", "result_probability": 0.5, "predictions": [0.5, 0.48] + [0.0025] * 8},
    ]
    assert list(ORDERS.values()) == ["lowest", "margin", "newest"]
    assert [t["id"] for t in order_items(items, "lowest")] == ["mid", "old", "new"]
    assert [t["id"] for t in order_items(items, "margin")] == ["old", "new", "mid"]
    assert [t["id"] for t in order_items(items, "newest")] == ["new", "mid", "old"]
    alert = {"camera": "CamB", "signal": "uncertain_share", "started": "2026-01-01T00:00:00Z",
             "message": "camera CamB: uncertain share changed from 1.5% to 19.9%"}  # fmt: skip
    cams = [{"name": "CamB", "images": 10, "accuracy": None, "alerts": [alert], "held_back": 3}]
    banner = alert_banner_html(cams)
    assert 'class="metro-alert-banner"' in banner and "19.9%" in banner and "CamB" in banner
    assert alert_banner_html([{**cams[0], "alerts": []}]) == ""
    table = camera_table_html(cams)
    assert "uncertain share" in table and "<td>3</td>" in table
    body = {"labellers": [{"labeller": "ana", "labels": 4, "compared": 2, "agreement": 0.5, "conflicts": 1}],
            "images": 3, "conflicts": 1}  # fmt: skip
    assert "50%" in labellers_html(body) and 'metro-conflict-count">1<' in labellers_html(body)
