"""Registry statuses a user reads: the fleet's first model is `serving` from the hub's start; a model
published to every camera supersedes it, so one model at a time is the fleet's and the older ones say
`superseded`, with when."""

from __future__ import annotations

import hashlib

from edgemnist.model import load_model
from edgemnist.testing.fakes import FakeProducer
from metro_app.rollout.publish import ModelPublisher
from metro_app.training.retrain import register_initial_model

SHA = "ab" * 32


def test_the_hubs_first_model_is_registered_serving_once(store, model_path, tmp_path):
    assert register_initial_model(store, tmp_path / "no-models-here", train=False) is None
    assert store.models() == []  # no file and no training: nothing made up
    version = load_model(model_path).version
    assert register_initial_model(store, model_path, train=False) == version
    [m] = store.models()
    assert (m["version"], m["status"], m["parent"]) == (version, "serving", None)
    assert "initial model from" in m["reason"] and [e["status"] for e in m["events"]] == ["serving"]
    assert store.current_model()["version"] == version  # what the fleet runs, for retrain and rollouts
    assert register_initial_model(store, model_path, train=False) is None  # a hub restart adds nothing
    assert len(store.models()) == 1


def _add(store, version, data=b"PK"):
    store.add_model(version, hashlib.sha256(data).hexdigest(), data, parent="m-1", reason="accepted")


def test_publishing_to_every_camera_supersedes_the_fleets_model_a_canary_does_not(store):
    store.add_model("m-1", SHA, b"one", status="serving", reason="initial model")
    _add(store, "m-2")
    _add(store, "m-3")
    publisher = ModelPublisher(topic="models", producer=FakeProducer())
    publisher.publish(store, "m-2", ("CamA",), status="canary")  # a canary: the fleet still runs m-1
    assert {m["version"]: m["status"] for m in store.models()} == {
        "m-1": "serving",
        "m-2": "canary",
        "m-3": "candidate",
    }
    publisher.publish(store, "m-3")  # every camera
    by = {m["version"]: m for m in store.models()}
    assert {v: m["status"] for v, m in by.items()} == {
        "m-1": "superseded",
        "m-2": "canary",
        "m-3": "published",
    }
    assert by["m-1"]["reason"] == "superseded by m-3" and by["m-1"]["updated"] >= by["m-3"]["created"]
    assert [e["status"] for e in by["m-1"]["events"]] == ["serving", "superseded"]
    _add(store, "m-4")
    publisher.publish(store, "m-4")
    statuses = [m["status"] for m in store.models()]
    assert statuses.count("published") == 1 and store.current_model()["version"] == "m-4"
    assert store.model("m-3")["status"] == "superseded"


def test_a_registry_an_older_hub_made_takes_the_new_statuses_with_its_rows_kept(tmp_path):
    import sqlalchemy as sa

    from metro_app.store import Store
    from metro_app.store.schema import model_events

    url = f"sqlite:///{tmp_path}/old.db"
    Store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the registry as an older hub made it: fewer statuses in its CHECK
        conn.execute(sa.text("DROP TABLE model_events"))
        conn.execute(sa.text("DROP TABLE model_registry"))
        conn.execute(sa.text(
            "CREATE TABLE model_registry (version VARCHAR(300) NOT NULL PRIMARY KEY, sha256 VARCHAR(64) NOT NULL, "
            "parent VARCHAR(300), status VARCHAR(32) NOT NULL, created FLOAT NOT NULL, updated FLOAT NOT NULL, "
            "reason TEXT NOT NULL, card TEXT NOT NULL, data BLOB NOT NULL, CONSTRAINT ck_model_registry_status "
            "CHECK (status IN ('candidate', 'refused', 'canary', 'published', 'rolled_back')))"
        ))  # fmt: skip
        conn.execute(sa.text(
            "INSERT INTO model_registry VALUES ('m-1', :sha, NULL, 'published', 1.0, 1.0, 'initial', '{}', x'504b')"
        ), {"sha": SHA})  # fmt: skip
        model_events.create(conn)  # its events refer to the registry by name
        conn.execute(
            sa.insert(model_events), {"version": "m-1", "status": "published", "time": 1.0, "reason": "x"}
        )
    engine.dispose()
    store = Store(url)  # an upgraded hub opens it
    try:
        store.add_model("m-2", SHA, b"PK-2", parent="m-1", reason="accepted")
        store.set_model_status("m-2", "published", "on the topic", supersede=True)
        assert {m["version"]: m["status"] for m in store.models()} == {
            "m-1": "superseded",
            "m-2": "published",
        }
        assert store.model_file("m-1") == b"PK"
        assert [e["status"] for e in store.model("m-1")["events"]] == ["published", "superseded"]
        with store.engine.begin() as conn:
            tables = {
                r[0] for r in conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'table'"))
            }
        assert "model_registry_before" not in tables
    finally:
        store.close()
