"""Hub store: idempotent writes on message id, one transaction per batch, views rebuilt from rows."""

import base64

import pytest

from edgemnist.errors import ConfigError
from metro_app.samples import make_image, make_metrics, png_frame
from metro_app.store import DeadLetter, Store


def test_sqlite_store_uses_wal_and_a_busy_timeout(store):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_a_message_delivered_twice_is_stored_once(store):
    metrics = [make_metrics("CamA", i) for i in range(5)]
    images = [make_image("CamA", i) for i in range(7)]
    first = store.write_batch(metrics, images, [DeadLetter("t", 0, 3, "not JSON")])
    again = store.write_batch(metrics + metrics, images + images, [DeadLetter("t", 0, 3, "not JSON")])
    assert (first.metrics, first.images, first.dead_letters) == (5, 7, 1)
    assert (again.metrics, again.images, again.dead_letters) == (0, 0, 0)
    assert store.counts() == {
        "metrics": 5,
        "images": 7,
        "labels": 0,
        "dead_letters": 1,
        "models": 0,
        "training_images": 0,
    }


def test_a_batch_that_fails_midway_stores_nothing(store, monkeypatch):
    def fail(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_insert_dead", fail)  # runs last, after metrics and images were inserted
    with pytest.raises(RuntimeError):
        store.write_batch([make_metrics("CamA", 1)], [make_image("CamA", 1)], [DeadLetter("t", 0, 1, "x")])
    assert store.counts()["metrics"] == 0 and store.counts()["images"] == 0


def test_image_round_trips_to_the_wire_dict(store):
    img = make_image("CamA", 3)
    store.write_batch([], [img])
    [(seq, stored)] = store.images_page(0, 10)
    assert seq >= 1 and stored == img.to_dict()
    row = store.image(img.id)
    assert base64.b64decode(row.image) == png_frame(3)


def test_metrics_pages_ascend_and_resume_after_a_seq(store):
    store.write_batch([make_metrics("CamA", i) for i in range(10)], [])
    first = store.metrics_page(0, 4)
    rest = store.metrics_page(first[-1][0], 100)
    seqs = [s for s, _ in first + rest]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    assert [b["id"] for _, b in first + rest] == [f"CamA/r1/m{i}" for i in range(10)]


def test_labels_record_previous_prediction_and_model(store):
    img = make_image("CamA", 4)
    store.write_batch([], [img])
    label = store.add_label(img.id, "9", "ana")
    assert label["image_id"] == img.id and label["label"] == "9" and label["labeller"] == "ana"
    assert (
        label["previous_prediction"] == 4
        and label["model_version"] == "m-test"
        and label["created"].endswith("Z")
    )
    assert store.labels() == [label]
    assert store.add_label("no-such-image", "1", "ana") is None


def test_only_sqlite_and_postgresql_urls_are_accepted():
    with pytest.raises(ConfigError, match="mysql"):
        Store("mysql://localhost/x")
    with pytest.raises(ConfigError, match="not a database URL"):
        Store("hub.db")
