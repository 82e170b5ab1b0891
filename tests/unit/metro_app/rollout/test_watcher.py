"""Canary rollouts without a broker: the rule, every transition of the watcher, a restart, the lease, rollback by hand.

The watcher runs against a real SQLite store and the real `ModelPublisher` with a
fake producer, so what goes "on the topic" is the envelope an edge would read.
"""

from __future__ import annotations

import hashlib

import pytest

from edgemnist.errors import BrokerUnavailable, ConfigError, ModelError
from edgemnist.testing.fakes import FakeClock
from metro_app.rollout.policy import Figures, Policy, figures, judge, matches
from metro_app.rollout.publish import ModelPublisher
from metro_app.rollout.watcher import RolloutWatcher, register_rollout, rollback
from metro_app.store import Store
from metro_app.store.leases import Lease
from metro_app.store.rollouts import RolloutBook, RolloutBusy
from metro_app.testing import ModelsProducer, scored_window

POLICY = Policy(
    windows=3, max_accuracy_drop=5, max_uncertain_rise=10, timeout=60, min_images=50, shadow=False
)


def watcher(store, producer, clock=None, holder="hub-1"):
    return RolloutWatcher(
        store,
        ModelPublisher(topic="models", producer=producer),
        holder=holder,
        clock=clock or FakeClock(1000.0),
    )


def add_windows(store, camera, version, ns, **kw):
    store.write_batch([scored_window(camera, n, version, **kw) for n in ns], [])


# the rule ---------------------------------------------------------------------------------------


def test_the_rule_every_verdict():
    base = {"A": Figures(5, 1000, 30, 1000, 970)}
    good = Figures(1, 200, 8, 200, 192)
    assert judge(base, {"A": good}, [], POLICY, 1).action == "wait"
    assert judge(base, {"A": Figures(3, 600, 24, 600, 580)}, [], POLICY, 3).action == "promote"
    refused = judge(base, {}, ["A: sha256 mismatch"], POLICY, 1)
    assert refused.action == "rollback" and "refused" in refused.reason and "sha256" in refused.reason
    worse = judge(base, {"A": Figures(1, 200, 6, 200, 180)}, [], POLICY, 1)  # 0.970 -> 0.900
    assert worse.action == "rollback" and "live accuracy 0.970 -> 0.900 (-7.0 points" in worse.reason
    unsure = judge(base, {"A": Figures(1, 200, 60, 0, 0)}, [], POLICY, 1)  # no labels: uncertain only
    assert unsure.action == "rollback" and "uncertain share 0.030 -> 0.300 (+27.0 points" in unsure.reason
    # a tiny first window decides nothing, until the camera has sent its windows
    assert judge(base, {"A": Figures(1, 10, 5, 10, 5)}, [], POLICY, 1).action == "wait"
    assert judge(base, {"A": Figures(3, 30, 15, 30, 15)}, [], POLICY, 3).action == "rollback"
    late = judge(base, {"A": Figures(2, 400, 12, 400, 388)}, [], POLICY, 61)
    assert late.action == "rollback" and "timed out after 60 s" in late.reason and "A 2 of 3" in late.reason
    # a drop exactly at the bound is within it
    assert judge(base, {"A": Figures(3, 1000, 30, 1000, 920)}, [], POLICY, 3).action == "promote"


def test_figures_pool_windows_and_cameras_match_as_the_edges_do():
    ws = [scored_window("CamA-h", n, "m-2").to_dict() for n in range(2)]
    assert figures(ws, "CamA-h") == Figures(2, 400, 12, 400, 388)
    assert figures(ws, "CamB-h") == Figures()
    assert matches("CamA-h", ["CamA"]) and matches("CamA-h", ["CamA-h"]) and not matches("CamAB-h", ["CamA"])
    with pytest.raises(ConfigError, match="windows"):
        Policy(windows=0)


# registration -----------------------------------------------------------------------------------


def test_registration_refuses_what_cannot_be_judged(fleet_store):
    with pytest.raises(ModelError, match="m-9"):
        register_rollout(fleet_store, "m-9", "CamA", POLICY, "test")
    with pytest.raises(ConfigError, match="already published to every camera"):
        register_rollout(fleet_store, "m-1", "CamA", POLICY, "test")
    with pytest.raises(ConfigError, match="CamZ: no metrics windows"):
        register_rollout(fleet_store, "m-2", "CamA,CamZ", POLICY, "test")
    r = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")
    assert (r["state"], r["parent"], r["targets"], r["windows"]) == ("pending", "m-1", ["CamA"], 3)
    with pytest.raises(RolloutBusy, match=f"rollout {r['rollout']} of m-2 is still running"):
        register_rollout(fleet_store, "m-2", "CamB", POLICY, "test")
    assert fleet_store.model("m-2")["status"] == "candidate"  # nothing published until a hub starts it


# the watcher: every transition ----------------------------------------------------------------------


def test_a_canary_within_bounds_is_promoted_to_every_camera(fleet_store, producer):
    clock = FakeClock(1000.0)
    w = watcher(fleet_store, producer, clock)
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    assert w.tick()
    r = RolloutBook(fleet_store).get(rid)
    assert r["state"] == "canary" and r["cameras"] == ["CamA-h"]
    assert r["baseline"]["CamA-h"]["windows"] == 3 and r["baseline"]["CamA-h"]["accuracy"] == 0.97
    [env] = producer.envelopes
    assert (env.version, env.targets) == ("m-2", ("CamA",))
    assert producer.served("CamA-h") == "m-2" and producer.served("CamB-h") is None
    assert fleet_store.model("m-2")["status"] == "canary" and fleet_store.current_model()["version"] == "m-1"

    add_windows(fleet_store, "CamA-h", "m-2", [10, 11], correct=193)
    add_windows(fleet_store, "CamB-h", "m-1", [10, 11])
    clock.now += 2
    w.tick()
    r = RolloutBook(fleet_store).get(rid)
    assert (
        r["state"] == "canary" and r["figures"]["CamA-h"]["windows"] == 2 and "canary running" in r["reason"]
    )
    add_windows(fleet_store, "CamA-h", "m-2", [12])
    clock.now += 1
    w.tick()
    r = RolloutBook(fleet_store).get(rid)
    assert r["state"] == "promoted" and r["seconds"] == 3.0 and "3 windows within bounds" in r["reason"]
    assert [(e.version, e.targets) for e in producer.envelopes] == [("m-2", ("CamA",)), ("m-2", None)]
    assert {producer.served(c) for c in ("CamA-h", "CamB-h", "CamC-h")} == {"m-2"}
    m = fleet_store.model("m-2")
    assert [e["status"] for e in m["events"]] == [
        "candidate",
        "publishing",
        "canary",
        "publishing",
        "published",
    ]
    assert "promoted by rollout" in m["reason"] and fleet_store.current_model()["version"] == "m-2"
    assert not RolloutBook(fleet_store).active() and w.stats["promoted"] == 1


def test_a_bad_canary_is_rolled_back_on_its_cameras_only(fleet_store, producer):
    w = watcher(fleet_store, producer)
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    w.tick()
    add_windows(fleet_store, "CamA-h", "m-2", [10], uncertain=190, correct=20)
    w.tick()
    r = RolloutBook(fleet_store).get(rid)
    assert r["state"] == "rolled_back" and "CamA-h: live accuracy 0.970 -> 0.100" in r["reason"]
    assert [(e.version, e.targets) for e in producer.envelopes] == [("m-2", ("CamA",)), ("m-1", ("CamA",))]
    assert producer.served("CamA-h") == "m-1" and producer.served("CamB-h") is None
    m = fleet_store.model("m-2")
    assert [e["status"] for e in m["events"]] == ["candidate", "publishing", "canary", "rolled_back"]
    assert m["status"] == "rolled_back" and "-87.0 points" in m["reason"]
    assert fleet_store.current_model()["version"] == "m-1"


def test_a_refusal_by_a_canary_camera_rolls_back_at_once(fleet_store, producer):
    w = watcher(fleet_store, producer)
    rid = register_rollout(fleet_store, "m-2", "CamA,CamB", POLICY, "test")["rollout"]
    w.tick()
    add_windows(fleet_store, "CamB-h", "m-1", [10], refused=[("m-2", "probe: output holds NaN")])
    w.tick()
    r = RolloutBook(fleet_store).get(rid)
    assert (
        r["state"] == "rolled_back"
        and "refused by a canary camera: CamB-h: probe: output holds NaN" in r["reason"]
    )
    assert producer.envelopes[-1].version == "m-1" and producer.envelopes[-1].targets == ("CamA", "CamB")


def test_a_canary_that_sends_too_few_windows_in_time_is_rolled_back(fleet_store, producer):
    clock = FakeClock(1000.0)
    w = watcher(fleet_store, producer, clock)
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    w.tick()
    add_windows(fleet_store, "CamA-h", "m-2", [10])
    clock.now += 61
    w.tick()
    r = RolloutBook(fleet_store).get(rid)
    assert (
        r["state"] == "rolled_back"
        and "timed out after 60 s" in r["reason"]
        and "CamA-h 1 of 3" in r["reason"]
    )


def test_a_model_that_cannot_be_published_fails_and_an_unreachable_broker_is_retried(fleet_store, producer):
    big = b"x" * (16 * 2**20 + 1)
    fleet_store.add_model("m-big", hashlib.sha256(big).hexdigest(), big, parent="m-1", reason="x")
    w = watcher(fleet_store, producer)
    rid = register_rollout(fleet_store, "m-big", "CamA", POLICY, "test")["rollout"]
    w.tick()
    r = RolloutBook(fleet_store).get(rid)
    assert r["state"] == "failed" and "larger than" in r["reason"] and producer.envelopes == []
    assert fleet_store.model("m-big")["status"] == "candidate"

    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    producer.fail_next = 1
    w.tick()  # not acknowledged: still pending, nothing recorded
    assert (
        RolloutBook(fleet_store).get(rid)["state"] == "pending"
        and fleet_store.model("m-2")["status"] == "candidate"
    )
    w.tick()
    assert RolloutBook(fleet_store).get(rid)["state"] == "canary"


def test_a_restarted_hub_resumes_the_rollout_from_the_store(tmp_path, fleet_store, producer):
    clock = FakeClock(1000.0)
    first = watcher(fleet_store, producer, clock, holder="hub-before")
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    first.tick()
    add_windows(fleet_store, "CamA-h", "m-2", [10, 11])
    first.tick()
    assert RolloutBook(fleet_store).get(rid)["figures"]["CamA-h"]["windows"] == 2
    fleet_store.close()  # the hub dies without releasing its lease

    again = Store(fleet_store.url)
    try:
        second = watcher(again, producer, clock, holder="hub-after")
        assert not second.tick(), "the dead hub's lease has not expired yet"
        clock.now += 16
        add_windows(again, "CamA-h", "m-2", [12])
        assert second.tick()
        r = RolloutBook(again).get(rid)
        assert r["state"] == "promoted" and r["figures"]["CamA-h"]["windows"] == 3
        assert [e.targets for e in producer.envelopes] == [
            ("CamA",),
            None,
        ]  # the canary was not published twice
        assert [e["status"] for e in again.model("m-2")["events"]] == [
            "candidate",
            "publishing",
            "canary",
            "publishing",
            "published",
        ]
    finally:
        again.close()


# the lease ---------------------------------------------------------------------------------------


def test_the_lease_has_one_holder_until_it_expires_or_is_released(fleet_store):
    a, b = Lease(fleet_store.engine, "job", "a", ttl=10), Lease(fleet_store.engine, "job", "b", ttl=10)
    assert a.acquire(now=0) and not b.acquire(now=1) and a.acquire(now=9)  # renewed until 19
    assert not b.acquire(now=18) and b.acquire(now=20) and not a.acquire(now=21)
    assert b.holder_now() == "b"
    b.release()
    assert a.acquire(now=22) and Lease(fleet_store.engine, "other", "b").acquire(now=22)


def test_two_hubs_sharing_a_store_publish_each_step_once(fleet_store, producer):
    clock = FakeClock(1000.0)
    hubs = [watcher(fleet_store, producer, clock, holder=f"hub-{i}") for i in range(2)]
    register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")
    leaders = []
    for n in range(3):
        leaders.append([h.tick() for h in hubs])
        add_windows(fleet_store, "CamA-h", "m-2", [10 + 2 * n, 11 + 2 * n])  # after the canary started
        clock.now += 1
    assert leaders == [[True, False]] * 3
    assert [e.targets for e in producer.envelopes] == [("CamA",), None]


# rollback by hand --------------------------------------------------------------------------------


def test_rollback_by_hand_ends_a_canary_or_publishes_the_parent(fleet_store, producer):
    publisher = ModelPublisher(topic="models", producer=producer)
    w = watcher(fleet_store, producer)
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    w.tick()
    done = rollback(fleet_store, publisher)
    assert done["ended"] == [{"rollout": rid, "version": "m-2", "parent": "m-1", "targets": ["CamA"]}]
    assert producer.served("CamA-h") == "m-1" and fleet_store.model("m-2")["status"] == "rolled_back"
    assert RolloutBook(fleet_store).get(rid)["state"] == "rolled_back"
    assert "by hand" in RolloutBook(fleet_store).get(rid)["reason"]

    publisher.publish(fleet_store, "m-2")  # later promoted by other means; now roll it back to its parent
    done = rollback(fleet_store, publisher)
    assert done == {"ended": [], "published": "m-1", "targets": None}
    assert producer.envelopes[-1].version == "m-1" and producer.envelopes[-1].targets is None
    assert (
        fleet_store.model("m-2")["status"] == "rolled_back"
        and fleet_store.current_model()["version"] == "m-1"
    )
    done = rollback(fleet_store, publisher, "m-2", ["CamC"])
    assert (
        done["published"] == "m-2"
        and producer.served("CamC-h") == "m-2"
        and producer.served("CamB-h") == "m-1"
    )


def test_rollback_without_a_parent_names_the_problem(tmp_path, producer):
    s = Store(f"sqlite:///{tmp_path}/solo.db")
    try:
        s.add_model("m-1", "0" * 64, b"PK", status="published", reason="initial")
        with pytest.raises(ModelError, match="no parent"):
            rollback(s, ModelPublisher(topic="models", producer=producer))
        with pytest.raises(BrokerUnavailable):
            p = ModelsProducer()
            p.fail_next = 1
            rollback(s, ModelPublisher(topic="models", producer=p), "m-1")
    finally:
        s.close()


def test_rollback_to_a_version_that_never_served_needs_force(fleet_store, producer):
    """Issue 24.8: an imported candidate, never evaluated on a camera, is not a rollback target by default."""
    publisher = ModelPublisher(topic="models", producer=producer)
    fleet_store.add_model("m-imported", "0" * 64, b"PK-imported", parent="m-1", reason="imported")
    before = len(producer.envelopes)
    with pytest.raises(ModelError, match="m-imported.*never served.*--force"):
        rollback(fleet_store, publisher, "m-imported")
    assert len(producer.envelopes) == before and fleet_store.model("m-imported")["status"] == "candidate"
    done = rollback(fleet_store, publisher, "m-imported", force=True)
    assert done["published"] == "m-imported" and producer.envelopes[-1].version == "m-imported"
