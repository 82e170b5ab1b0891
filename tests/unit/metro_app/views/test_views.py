"""Hub views: the reference's tuple shapes, our snapshot views, seqs from store row ids."""

import pytest

from metro_app.samples import make_image, make_metrics
from metro_app.store import Store
from metro_app.views.catalog import WINDOW_SIZE, Views


@pytest.fixture
def busy_store(store):
    """30 metrics windows of CamA and 4 of CamB, and 12 uncertain images of CamA."""
    store.write_batch(
        [make_metrics("CamA", i) for i in range(30)] + [make_metrics("CamB", i) for i in range(4)], []
    )
    store.write_batch([], [make_image("CamA", i) for i in range(12)])
    return store


def test_classification_metrics_tuples_are_the_metrics_messages(busy_store):
    items = Views(busy_store).get("ClassificationMetrics").page(0, 1000)
    assert len(items) == 34
    assert items[0][1] == make_metrics("CamA", 0).to_dict() | {"timestamp": items[0][1]["timestamp"]}
    assert all("camera_metrics" in t for _, t in items)


def test_window_uncertain_holds_the_last_25_metrics_messages(busy_store):
    view = Views(busy_store).get("WindowUncertain")
    items = view.page(0, 1000)
    assert [len(t) for _, t in items] == [min(k + 1, WINDOW_SIZE) for k in range(34)]
    seq, last = items[-1]
    assert [m["id"] for m in last] == [
        t["id"] for _, t in Views(busy_store).get("ClassificationMetrics").page(0, 1000)
    ][-25:]
    # a page starting in the middle still sees the 24 messages before it
    assert view.page(items[29][0], 2) == items[30:32]


def test_uncertain_predictions_tuples_are_the_image_messages(busy_store):
    items = Views(busy_store).get("UncertainPredictions").page(0, 5)
    assert [t["id"] for _, t in items] == [f"CamA/r1/i{i}" for i in range(5)]
    assert items[0][1] == make_image("CamA", 0).to_dict() | {"timestamp": items[0][1]["timestamp"]}


def test_seqs_increase_and_views_report_last_seq_and_size(busy_store):
    for view in Views(busy_store):
        items = view.page(0, 1000)
        seqs = [s for s, _ in items]
        assert seqs == sorted(set(seqs)), view.name
        assert view.last_seq() >= seqs[-1] and view.size() == len(items), view.name


def test_views_survive_a_restart_with_the_same_seqs(busy_store, tmp_path):
    before = {v.name: v.page(0, 1000) for v in Views(busy_store)}
    reopened = Store(busy_store.url)
    assert {v.name: v.page(0, 1000) for v in Views(reopened)} == before


def test_camera_health_per_camera(busy_store):
    health = {t["name"]: t for _, t in Views(busy_store).camera_health.snapshot()}
    a = health["CamA"]
    assert a["windows"] == 30 and a["images"] == 600 and a["uncertain"] == 150
    assert a["uncertain_share"] == pytest.approx(0.25) and a["images_per_second"] == pytest.approx(10.0)
    assert a["uncertain_images_stored"] == 12 and a["uncertain_accuracy_samples"] == 12
    assert a["uncertain_accuracy"] == pytest.approx(sum(i % 10 == (i + i // 7) % 10 for i in range(12)) / 12)
    assert a["accuracy"] is None and a["accuracy_samples"] == 0  # these windows carry no labels
    assert a["prep_p99"] > 0 and a["outbox_pending"] == 29 % 3 and not a["departs_from_fleet"]
    assert health["CamB"]["accuracy"] is None and health["CamB"]["last_seen"].endswith("Z")


def test_camera_health_accuracy_is_live_over_every_scored_image(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/h.db")
    s.write_batch([make_metrics("Rot", i, correct=15 + i) for i in range(6)], [])
    rot = next(t for _, t in Views(s).camera_health.snapshot())
    # the 5 most recent windows: 20 labelled images each, 16..20 right
    assert rot["accuracy_samples"] == 100 and rot["accuracy"] == pytest.approx(90 / 100)


def test_camera_health_flags_a_camera_that_departs_from_the_fleet(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/h.db")
    odd = make_metrics("Odd", 0)
    counts = odd.camera_metrics["Odd"]
    skewed = type(counts)(
        tuple([0] * 11), tuple(a + b for a, b in zip(counts.certain, counts.uncertain, strict=True))
    )
    object.__setattr__(odd, "camera_metrics", {"Odd": skewed})
    s.write_batch([make_metrics("CamA", 1), make_metrics("CamB", 1), odd], [])
    health = {t["name"]: t for _, t in Views(s).camera_health.snapshot()}
    assert health["Odd"]["departs_from_fleet"] and health["Odd"]["uncertain_share"] == 1.0
    assert not health["CamA"]["departs_from_fleet"]


def test_camera_health_reappears_with_a_higher_seq_when_the_camera_reports(busy_store):
    view = Views(busy_store).get("CameraHealth")
    last = view.last_seq()
    assert view.page(last, 10) == []
    busy_store.write_batch([make_metrics("CamB", 99)], [])
    [(seq, t)] = view.page(last, 10)
    assert seq > last and t["name"] == "CamB" and t["windows"] == 5


def test_fleet_metrics_sums_all_cameras_per_time_bucket(busy_store):
    items = Views(busy_store).get("FleetMetrics").page(0, 100)
    assert sum(t["images"] for _, t in items) == 34 * 20
    cams = {c for _, t in items for c in t["cameras"]}
    assert cams == {"CamA", "CamB"}
    assert all(len(t["cameras"][c]["certain"]) == 11 for _, t in items for c in t["cameras"])
