"""Cameras at fleet size (issue 23): health kept as windows arrive, pages sorted worst first, filters, totals."""

from __future__ import annotations

import dataclasses
import random
import statistics
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from edgemnist.wire.messages import LABEL_SLOTS, CameraCounts, LatencyStats
from metro_app.api.app import create_app
from metro_app.samples import make_image, make_metrics
from metro_app.store import Store
from metro_app.views.catalog import Views
from metro_app.views.fleet import Fleet, median


def window(camera: str, n: int, *, images: int = 20, uncertain: int = 5, correct: int | None = None,
           p99: float = 0.003, others: tuple[str, ...] = ()):  # fmt: skip
    """The n-th window of `camera` with exact counts; `others`: more cameras named by the same window."""
    certain, unc = [0] * LABEL_SLOTS, [0] * LABEL_SLOTS
    certain[1], unc[2] = images - uncertain, uncertain
    counts = CameraCounts(tuple(certain), tuple(unc))
    m = make_metrics(camera, n, images=images, correct=correct)
    return dataclasses.replace(
        m,
        camera_metrics={camera: counts} | dict.fromkeys(others, counts),
        prep=LatencyStats.of([0.001, p99]),
    )


@pytest.fixture
def ranked_store(store):
    """Six cameras with known accuracy, uncertain share and p99; cam-b and Cam-B2 tie on accuracy."""
    specs = {  # name: (uncertain of 20, correct of 20, prep p99)
        "cam-a": (2, 19, 0.010),
        "cam-b": (4, 12, 0.020),
        "Cam-B2": (4, 12, 0.020),
        "cam-c": (10, 18, 0.005),
        "dock_1": (1, None, 0.050),
        "dock%2": (0, 20, 0.001),
    }
    store.write_batch(
        [window(c, k, uncertain=u, correct=r, p99=p) for k in range(3) for c, (u, r, p) in specs.items()], []
    )
    return store


def names(page):
    return [c["name"] for c in page["cameras"]]


def test_sorts_put_the_worst_first_and_break_ties_by_name(ranked_store):
    fleet = Fleet(ranked_store)
    # accuracy: lowest first, cameras without labels last
    assert names(fleet.page(sort="accuracy")) == ["Cam-B2", "cam-b", "cam-c", "cam-a", "dock%2", "dock_1"]
    assert names(fleet.page(sort="uncertain")) == ["cam-c", "Cam-B2", "cam-b", "cam-a", "dock_1", "dock%2"]
    assert names(fleet.page(sort="p99")) == ["dock_1", "Cam-B2", "cam-b", "cam-a", "cam-c", "dock%2"]
    assert names(fleet.page(sort="name")) == sorted(names(fleet.page(sort="name")))
    worst = fleet.page(sort="accuracy", limit=1)["cameras"][0]
    assert worst["accuracy"] == pytest.approx(0.6) and worst["accuracy_samples"] == 60


def test_pages_cover_every_camera_once_and_carry_the_total(ranked_store):
    fleet = Fleet(ranked_store)
    seen, offset = [], 0
    while offset is not None:
        page = fleet.page(sort="uncertain", limit=4, offset=offset)
        assert page["total"] == 6 and len(page["cameras"]) <= 4
        seen += names(page)
        offset = page["next_offset"]
    assert seen == names(fleet.page(sort="uncertain", limit=500))
    assert len(set(seen)) == 6
    assert fleet.page(offset=6)["cameras"] == [] and fleet.page(offset=6)["total"] == 6


def test_the_name_filter_ignores_case_and_takes_wildcards_literally(ranked_store):
    fleet = Fleet(ranked_store)
    page = fleet.page(q="CAM-B")
    assert names(page) == ["Cam-B2", "cam-b"] and page["total"] == 2
    assert names(fleet.page(q="%")) == ["dock%2"] and names(fleet.page(q="_")) == ["dock_1"]
    assert fleet.page(q="nobody")["total"] == 0


def test_the_alert_filter_keeps_cameras_with_an_open_alert(ranked_store):
    ranked_store.add_alert("k1", "cam-c", "drift", "t", "cam-c drifts", {})
    ranked_store.add_alert("k2", "cam-a", "drift", "t", "cam-a drifts", {})
    ranked_store.close_alerts("cam-a", "drift", "recovered")
    page = Fleet(ranked_store).page(alert=True)
    assert names(page) == ["cam-c"] and page["total"] == 1
    assert [a["message"] for a in page["cameras"][0]["alerts"]] == ["cam-c drifts"]
    summary = Fleet(ranked_store).summary(worst=2)
    assert (summary["cameras"], summary["active"], summary["alerting"], summary["alerts"]) == (6, 6, 1, 1)
    assert [c["name"] for c in summary["worst_accuracy"]] == ["Cam-B2", "cam-b"]
    assert [c["name"] for c in summary["worst_uncertain"]] == ["cam-c", "Cam-B2"]


def test_a_camera_is_inactive_once_three_of_its_windows_pass_without_one(ranked_store):
    counts = ranked_store.camera_counts(now=1e12)
    assert counts["cameras"] == 6 and counts["active"] == 0


def random_traffic(seed: int):
    """Batches of windows (some naming several cameras, some labelled) and uncertain images."""
    rng = random.Random(seed)
    cams = [f"Cam{k}" for k in range(7)]
    n = 0
    for _ in range(12):
        wins, imgs = [], []
        for _ in range(rng.randint(0, 9)):
            n += 1
            cam = rng.choice(cams)
            others = tuple(rng.sample([c for c in cams if c != cam], rng.choice([0, 0, 0, 2])))
            images = rng.randint(0, 40)
            correct = rng.randint(0, images) if rng.random() < 0.6 else None
            wins.append(window(cam, n, images=images, uncertain=rng.randint(0, images), correct=correct,
                               p99=rng.uniform(0.001, 0.1), others=others))  # fmt: skip
        for _ in range(rng.randint(0, 5)):
            n += 1
            img = make_image(rng.choice(cams), n)
            imgs.append(dataclasses.replace(img, true_class=rng.choice([None, 3, img.result_class])))
        yield wins, imgs


@pytest.mark.parametrize("seed", range(5))
def test_health_kept_as_windows_arrive_equals_health_computed_from_scratch(tmp_path, seed):
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    for wins, imgs in random_traffic(seed):
        store.write_batch(wins, imgs)
        store.write_batch(wins[:2], imgs[:2])  # a redelivery changes nothing
    view = Views(store).camera_health
    kept = {t["name"]: (seq, t) for seq, t in view.snapshot()}
    scratch = {t["name"]: (seq, t) for seq, t in view.recompute()}
    assert kept.keys() == scratch.keys() and len(kept) >= 5
    for name, (seq, t) in scratch.items():
        kseq, k = kept[name]
        assert kseq == seq, name
        for key, value in t.items():
            assert k[key] == (pytest.approx(value) if isinstance(value, float) else value), (name, key)
    # a store written before the table existed is filled from its windows, with the same figures
    assert store.rebuild_camera_health() == len(kept)
    assert {t["name"]: (s, t) for s, t in view.snapshot()} == kept
    store.close()


def test_a_store_without_health_rows_gets_them_when_a_hub_opens_it(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    store = Store(url)
    store.write_batch([window("Old", k, correct=15) for k in range(4)], [make_image("Old", 1)])
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM camera_health")
    store.close()
    reopened = Store(url)
    [cam] = Fleet(reopened).page()["cameras"]
    assert (cam["name"], cam["windows"], cam["images"], cam["accuracy"]) == ("Old", 4, 80, 0.75)
    assert cam["uncertain_images_stored"] == 1
    reopened.close()


def test_the_api_pages_filters_and_names_a_bad_parameter(ranked_store):
    client = TestClient(create_app(ranked_store))
    page = client.get("/cameras?sort=accuracy&limit=2&offset=1").json()
    assert [c["name"] for c in page["cameras"]] == ["cam-b", "cam-c"]
    assert (page["total"], page["next_offset"]) == (6, 3)
    assert client.get("/cameras?q=dock&alert=0").json()["total"] == 2
    for bad, param in [("limit=0", "limit"), ("limit=501", "limit"), ("offset=-1", "offset"),
                       ("sort=worst", "sort"), ("alert=maybe", "alert")]:  # fmt: skip
        r = client.get(f"/cameras?{bad}")
        assert r.status_code == 422 and f"query.{param}" in r.json()["message"], bad
    assert client.get("/cameras/summary?worst=1").json()["cameras"] == 6
    assert client.get("/cameras/dock%252").json()["name"] == "dock%2"
    r = client.get("/cameras/nobody")
    assert r.status_code == 404 and "nobody" in r.text


@pytest.mark.parametrize("shares", [[], [3], [3, 9], [9, 1, 5], [0, 4, 4, 10], [7, 2, 2, 19, 11, 0, 5]])
def test_the_fleet_median_is_found_by_the_database_as_from_every_share(store, shares):
    """`uncertain_median` reads the middle rows only; it equals the median of every camera's share."""
    store.write_batch([window(f"cam{k}", 0, uncertain=u) for k, u in enumerate(shares)], [])
    every = store.uncertain_shares()
    assert len(every) == len(shares)
    assert store.uncertain_median() == median(every)
    expected = statistics.median(u / 20 for u in shares) if shares else None  # 20 images per window
    assert store.uncertain_median() == pytest.approx(expected)


def test_a_camera_asked_by_name_brings_its_own_windows_images_and_hourly_roll_ups(store):
    """GET /cameras/{name}?windows=&images=&hours=: the detail page's data, whatever other cameras sent."""
    start = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # an hour's start
    old = [make_metrics("cam-x", n, correct=15, when=start + 600 * n) for n in range(8)]  # 2 hours of windows
    store.write_batch(old, [])
    assert store.retention().roll_up(before=time.time() + 1).windows == 8  # retention keeps them as hours
    new = [make_metrics(cam, n, correct=12) for n in range(10, 14) for cam in ("cam-x", "cam-y")]
    store.write_batch(new, [make_image(cam, n) for n in range(5) for cam in ("cam-x", "cam-y")])
    client = TestClient(create_app(store))
    got = client.get("/cameras/cam-x?recent_windows=3&recent_images=2&hourly=5").json()
    assert (
        got["name"] == "cam-x" and got["windows"] == 12
    )  # the health counts all it folded, rolled up or not
    assert got["recent_windows"] == [w.to_dict() for w in new[::2][-3:]]
    assert [t["id"] for t in got["recent_images"]] == [make_image("cam-x", n).id for n in (3, 4)]
    assert [(h["hour"], h["windows"], h["images"], h["accuracy"]) for h in got["hourly"]] == [
        (start, 6, 120, 0.75),
        (start + 3600, 2, 40, 0.75),
    ]
    assert set(client.get("/cameras/cam-y").json()) & {"recent_windows", "recent_images", "hourly"} == set()
    r = client.get("/cameras/cam-x?recent_windows=501")
    assert r.status_code == 422 and "query.recent_windows" in r.json()["message"]


def test_a_view_request_reads_through_one_connection(ranked_store):
    """A page, its count, the fleet's median and the page's alerts: one checkout (one pool ping on
    PostgreSQL), not one per read; outside a `reading()` block each read takes its own."""
    checkouts = []
    sa.event.listen(ranked_store.engine, "checkout", lambda *a: checkouts.append(1))
    fleet = Fleet(ranked_store)
    for ask in (
        lambda: fleet.page(sort="accuracy"),
        fleet.summary,
        lambda: fleet.camera("cam-a", recent_windows=5),
    ):
        checkouts.clear()
        assert ask()
        assert len(checkouts) == 1
    checkouts.clear()
    ranked_store.camera_rows()
    ranked_store.uncertain_median()
    assert len(checkouts) == 2
