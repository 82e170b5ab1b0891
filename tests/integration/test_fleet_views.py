"""Camera health at fleet size on a real PostgreSQL shared by two hub stores (issue 23)."""

from __future__ import annotations

import threading

import pytest

from metro_app.samples import make_image, make_metrics
from metro_app.store import Store
from metro_app.views.catalog import Views
from metro_app.views.fleet import Fleet, median

pytestmark = pytest.mark.integration

CAMERAS = [f"Line{k % 3}-Cam{k:03d}" for k in range(60)]


def batches(hub: int):
    """Both hubs write windows of every camera (as a group's partitions move between them), and
    each redelivers some of the other's: 8 windows per camera in the store, each once."""
    for n in range(8):
        wins = [make_metrics(cam, n, correct=10 + (k % 7) + n % 2) for k, cam in enumerate(CAMERAS)
                if (k + n) % 2 == hub]  # fmt: skip
        again = [make_metrics(cam, n) for k, cam in enumerate(CAMERAS) if (k + n) % 2 != hub][:5]
        imgs = [make_image(cam, n * 100 + k) for k, cam in enumerate(CAMERAS) if k % 4 == hub]
        yield wins + again, imgs


def test_two_hubs_on_one_postgresql_keep_one_truth_paged_and_sorted(postgres):
    url = postgres.fresh_database("fleet_views")
    hubs = [Store(url), Store(url)]
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            for wins, imgs in batches(k):
                hubs[k].write_batch(wins, imgs)
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert hubs[0].counts()["metrics"] == 60 * 8

    view = Views(hubs[1]).camera_health
    kept = {t["name"]: t for _, t in view.snapshot()}
    scratch = {t["name"]: t for _, t in view.recompute()}
    assert kept.keys() == scratch.keys() == set(CAMERAS)
    for name, t in scratch.items():
        for key, value in t.items():
            assert kept[name][key] == (pytest.approx(value) if isinstance(value, float) else value), (
                name,
                key,
            )
    assert all(t["windows"] == 8 and t["images"] == 160 for t in kept.values())

    # both hubs serve the same pages; the order is worst first, then by name, and stable
    pages = [Fleet(h).page(sort="accuracy", limit=7, offset=14) for h in hubs]
    assert pages[0] == pages[1] and pages[0]["total"] == 60 and pages[0]["next_offset"] == 21
    every = Fleet(hubs[0]).page(sort="accuracy", limit=500)["cameras"]
    keys = [(c["accuracy"], c["name"]) for c in every]
    assert keys == sorted(keys) and len(keys) == 60
    line1 = Fleet(hubs[0]).page(q="line1-", limit=500)
    assert line1["total"] == 20 and all(c["name"].startswith("Line1-") for c in line1["cameras"])
    hubs[0].add_alert("k", "Line2-Cam005", "drift", "t", "drifts", {})
    assert [c["name"] for c in Fleet(hubs[1]).page(alert=True)["cameras"]] == ["Line2-Cam005"]
    shares = hubs[0].uncertain_shares()
    assert len(shares) == 60 and hubs[1].uncertain_median() == median(shares)  # PostgreSQL finds the middle
    summary = Fleet(hubs[1]).summary(worst=3)
    assert (summary["cameras"], summary["alerting"], summary["alerts"]) == (60, 1, 1)
    assert [c["name"] for c in summary["worst_accuracy"]] == [c["name"] for c in every[:3]]

    # a hub opening a store whose table was lost fills it again from the windows, with the same figures
    before = view.snapshot()
    with hubs[0].engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM camera_health")
    reopened = Store(url)
    assert Views(reopened).camera_health.snapshot() == before
    for s in [*hubs, reopened]:
        s.close()
