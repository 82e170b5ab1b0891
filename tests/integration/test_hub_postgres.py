"""The hub store on a real PostgreSQL (a throwaway cluster on loopback, started by a fixture)."""

from __future__ import annotations

import threading

import pytest

from metro_app.samples import make_image, make_metrics
from metro_app.store import Store
from metro_app.views.catalog import Views

pytestmark = pytest.mark.integration


def test_store_on_postgresql_is_idempotent(postgres):
    store = Store(postgres.fresh_database("idem"))
    metrics = [make_metrics("CamA", i) for i in range(5)]
    images = [make_image("CamA", i) for i in range(5)]
    assert store.write_batch(metrics, images).images == 5
    again = store.write_batch(metrics, images)
    assert (again.metrics, again.images) == (0, 0)
    assert store.counts()["metrics"] == 5 and store.counts()["images"] == 5
    [(_, img)] = store.images_page(0, 1)
    assert img == make_image("CamA", 0).to_dict() | {"timestamp": img["timestamp"]}
    store.close()


def test_concurrent_writers_never_let_a_reader_skip_a_row(postgres):
    url = postgres.fresh_database("concurrent")
    writers = [Store(url) for _ in range(3)]
    reader = Views(Store(url)).get("ClassificationMetrics")
    seen: list[str] = []
    done = threading.Event()

    def write(k: int, store: Store) -> None:
        for b in range(20):
            store.write_batch([make_metrics(f"Cam{k}", b * 5 + i) for i in range(5)], [])

    def read() -> None:
        after = 0
        while True:
            last = done.is_set()
            for seq, t in reader.page(after, 1000):
                seen.append(t["id"])
                after = seq
            if last:
                return

    threads = [threading.Thread(target=write, args=(k, s)) for k, s in enumerate(writers)]
    r = threading.Thread(target=read)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    r.join()
    assert len(seen) == len(set(seen)) == 300


def test_model_registry_and_training_labels_on_postgresql(postgres):
    import base64

    from metro_app.samples import png_frame

    store = Store(postgres.fresh_database("registry"))
    assert store.add_model("m-1", "ab" * 32, b"\x00PK\xff" * 1000, status="published", reason="initial")
    assert store.add_model(
        "m-2", "cd" * 32, b"two", parent="m-1", reason="trained", card={"field_accuracy": 0.9}
    )
    assert not store.add_model("m-2", "cd" * 32, b"again")
    store.set_model_status("m-2", "published", "on the topic")
    assert store.model_file("m-1") == b"\x00PK\xff" * 1000
    assert store.current_model()["version"] == "m-2"
    m2 = store.models()[0]
    assert (m2["version"], m2["field_accuracy"]) == ("m-2", 0.9)
    assert [e["status"] for e in m2["events"]] == ["candidate", "published"]
    png = base64.b64encode(png_frame(2)).decode()
    item = {"id": "scan-1", "image": png, "label": 2, "labeller": "line", "source": "scanner"}
    assert store.add_training_images([item]) == 1 and store.add_training_images([item]) == 0
    store.write_batch([], [make_image("CamA", 0)])
    store.add_label(make_image("CamA", 0).id, "3", "ana")
    store.add_label(make_image("CamA", 0).id, "8", "ana")  # her correction wins
    assert {(i, label) for i, label, _ in store.latest_labels()} == {
        ("scan-1", "2"),
        (make_image("CamA", 0).id, "8"),
    }
    store.close()


def test_a_batch_mixing_stored_and_new_messages_links_each_new_row_to_its_cameras(postgres):
    """The plain executemany path: rowcount and the newest ids, read under the write lock, name the new rows."""
    store = Store(postgres.fresh_database("mixed"))
    old = [make_metrics(f"Cam{i % 3}", i) for i in range(0, 20, 2)]
    assert store.write_batch(old, []).metrics == 10
    mixed = [make_metrics(f"Cam{i % 3}", i) for i in range(20)]
    got = store.write_batch(mixed, [make_image("CamA", 0)])
    assert (got.metrics, got.images) == (10, 1)
    ids = dict(store.metrics_page(0, 100))
    assert sorted(got.metric_ids) == got.metric_ids and {ids[i]["id"] for i in got.metric_ids} == {
        m.id for m in mixed[1::2]
    }
    for cam in ("Cam0", "Cam1", "Cam2"):
        windows = store.camera_windows(cam, 100)
        assert {w["id"] for w in windows} == {m.id for m in mixed if m.id.startswith(cam + "/")}
        assert all(next(iter(w["camera_metrics"])) == cam for w in windows)
    store.close()


def test_an_older_store_on_postgresql_takes_the_shadow_state_and_keeps_its_check(postgres):
    import sqlalchemy as sa
    from sqlalchemy.exc import IntegrityError

    url = postgres.fresh_database("widen")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the rollouts table as a hub before shadow stages made it
        conn.exec_driver_sql(
            "CREATE TABLE rollouts (id BIGSERIAL PRIMARY KEY, version VARCHAR(300) NOT NULL, "
            "parent VARCHAR(300) NOT NULL, targets TEXT NOT NULL, cameras TEXT, windows INTEGER NOT NULL, "
            "max_accuracy_drop FLOAT NOT NULL, max_uncertain_rise FLOAT NOT NULL, timeout FLOAT NOT NULL, "
            "min_images INTEGER NOT NULL, state VARCHAR(32) NOT NULL, trigger VARCHAR(300) NOT NULL, "
            "created FLOAT NOT NULL, updated FLOAT NOT NULL, started FLOAT, finished FLOAT, upto BIGINT, "
            "baseline TEXT, figures TEXT, reason TEXT NOT NULL, CONSTRAINT ck_rollouts_state CHECK "
            "(state IN ('pending', 'canary', 'promoted', 'rolled_back', 'failed')))"
        )
        conn.exec_driver_sql(
            "INSERT INTO rollouts (version, parent, targets, windows, max_accuracy_drop, max_uncertain_rise, "
            "timeout, min_images, state, trigger, created, updated, reason) "
            "VALUES ('m-2', 'm-1', '[]', 3, 5, 10, 60, 50, 'canary', 't', 1, 1, 'r')"
        )
    engine.dispose()
    store = Store(url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE rollouts SET state = 'shadow', shadow = '{}'")
        assert conn.exec_driver_sql("SELECT version, state, shadow FROM rollouts").all() == [
            ("m-2", "shadow", "{}")
        ]
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE rollouts SET state = 'bogus'")
    store.close()
    Store(url).close()  # a second hub finds nothing to widen


def test_a_registry_an_older_hub_made_on_postgresql_takes_the_new_statuses(postgres):
    import sqlalchemy as sa

    url = postgres.fresh_database("statuses")
    Store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the CHECK an older hub created
        conn.execute(sa.text("ALTER TABLE model_registry DROP CONSTRAINT ck_model_registry_status"))
        conn.execute(sa.text(
            "ALTER TABLE model_registry ADD CONSTRAINT ck_model_registry_status "
            "CHECK (status IN ('candidate', 'refused', 'canary', 'published', 'rolled_back'))"
        ))  # fmt: skip
    engine.dispose()
    store = Store(url)
    try:
        assert store.add_model("m-1", "ab" * 32, b"PK", status="serving", reason="initial")
        store.add_model("m-2", "ab" * 32, b"PK-2", parent="m-1", reason="accepted")
        assert store.set_model_status("m-2", "published", "on the topic", supersede=True) == ["m-1"]
        assert store.model("m-1")["status"] == "superseded"
    finally:
        store.close()
