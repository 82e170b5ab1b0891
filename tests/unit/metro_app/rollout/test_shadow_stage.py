"""The rollout watcher's shadow stage without a broker: a real SQLite store, the real publisher, a fake producer.

Unlabelled cameras: the verdict comes from the labelled disagreement images (McNemar's pairs).
Labelled cameras: the windows' right answers on the same frames decide as well.
"""

from __future__ import annotations

import dataclasses

import pytest

from edgemnist.testing.fakes import FakeClock
from edgemnist.wire.metricparts import ShadowStats
from metro_app.rollout.policy import Policy
from metro_app.rollout.publish import ModelPublisher
from metro_app.rollout.watcher import RolloutWatcher, register_rollout, rollback
from metro_app.samples import make_image
from metro_app.store.rollouts import RolloutBook
from metro_app.testing import scored_window

POLICY = Policy(windows=3, timeout=60, min_images=50, shadow_labels=10)


def watcher(store, producer, clock):
    return RolloutWatcher(store, ModelPublisher(topic="models", producer=producer), holder="h", clock=clock)


def shadow_window(camera, n, *, images=200, agree=190, correct=None, serving_correct=194, labelled=True):
    w = scored_window(camera, n, "m-1", images=images, correct=serving_correct)
    if not labelled:
        w = dataclasses.replace(w, labelled=None, correct=None)
    return dataclasses.replace(w, shadow=ShadowStats("m-2", images, agree, correct, held_back=0))


def disagreements(store, camera, first, n, *, serving, shadow):
    images = [
        dataclasses.replace(
            make_image(camera, first + i), result_class=serving, true_class=None,
            shadow_version="m-2", shadow_predicted=shadow, shadow_scores=tuple([0.1] * 10),
        )
        for i in range(n)
    ]  # fmt: skip
    store.write_batch([], images)
    return [m.id for m in images]


def state(store, rid):
    return RolloutBook(store).get(rid)


def test_a_rollout_starts_in_shadow_the_canary_cameras_keep_serving_their_model(fleet_store, producer):
    clock = FakeClock(1000.0)
    w = watcher(fleet_store, producer, clock)
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    assert "in shadow, then as a canary" in state(fleet_store, rid)["reason"]
    w.tick()
    r = state(fleet_store, rid)
    assert (r["state"], r["stage"], r["cameras"]) == ("shadow", "shadow", ["CamA-h"])
    assert r["shadow"]["needed"] == 10 and r["shadow"]["labels"] == 10
    [env] = producer.envelopes
    assert (env.version, env.targets, env.role) == ("m-2", ("CamA",), "shadow")
    assert producer.shadowed("CamA-h") == "m-2" and producer.shadowed("CamB-h") is None
    assert producer.served("CamA-h") is None, "no serving record: CamA-h keeps m-1"
    assert fleet_store.model("m-2")["status"] == "shadow"


def test_a_confidently_wrong_candidate_is_rolled_back_on_labelled_disagreements(fleet_store, producer):
    clock = FakeClock(1000.0)
    w = watcher(fleet_store, producer, clock)
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    w.tick()
    # unlabelled camera: windows carry agreement only; 1<->7 swapped, the serving model says 1, m-2 says 7
    fleet_store.write_batch([shadow_window("CamA-h", n, labelled=False) for n in (10, 11)], [])
    ids = disagreements(fleet_store, "CamA-h", 100, 8, serving=1, shadow=7)
    clock.now += 5
    w.tick()
    r = state(fleet_store, rid)
    assert r["state"] == "shadow" and r["shadow"]["disagreements"] == 8 and r["shadow"]["labelled"] == 0
    assert r["shadow"]["labelled_frames"] == 0, "an unlabelled camera's windows carry no right answers"
    assert r["shadow"]["images"] == 400 and r["shadow"]["agree"] == 380 and "needs 10 more" in r["reason"]
    for image_id in ids[:5]:  # a person labels them: the digit is a 1
        fleet_store.add_label(image_id, "1", "alice")
    clock.now += 5
    w.tick()
    r = state(fleet_store, rid)
    assert (r["state"], r["stage"]) == ("rolled_back", "rolled back")
    assert r["shadow"]["serving_right"] == 5 and r["shadow"]["candidate_right"] == 0
    assert r["shadow"]["p_value"] == pytest.approx(1 / 32)
    assert "serving right 5, candidate right 0" in r["reason"] and "kept m-1" in r["reason"]
    assert producer.tombstones == [b"shadow:CamA"] and producer.shadowed("CamA-h") is None
    assert producer.served("CamA-h") is None, "the candidate never served"
    m = fleet_store.model("m-2")
    assert m["status"] == "rolled_back" and [e["status"] for e in m["events"]] == [
        "candidate", "publishing", "shadow", "rolled_back",
    ]  # fmt: skip


def test_a_better_candidate_passes_the_shadow_stage_then_runs_the_canary_stage(fleet_store, producer):
    clock = FakeClock(1000.0)
    w = watcher(fleet_store, producer, clock)
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    w.tick()
    ids = disagreements(fleet_store, "CamA-h", 100, 12, serving=3, shadow=8)
    for k, image_id in enumerate(ids):
        fleet_store.add_label(image_id, "8" if k < 9 else "3", "bob")  # the candidate right on 9 of 12
    clock.now += 5
    w.tick()
    r = state(fleet_store, rid)
    assert r["state"] == "canary" and r["reason"].startswith("shadow passed: candidate not worse on 12")
    assert r["shadow"]["candidate_right"] == 9 and r["shadow"]["serving_right"] == 3
    assert [(e.role, e.targets) for e in producer.envelopes] == [("shadow", ("CamA",)), ("serve", ("CamA",))]
    assert producer.served("CamA-h") == "m-2" and producer.shadowed("CamA-h") is None
    assert r["baseline"]["CamA-h"]["windows"] >= 3, "the canary stage compares with the windows before"


def test_on_labelled_cameras_the_windows_right_answers_decide(fleet_store, producer):
    clock = FakeClock(1000.0)
    w = watcher(fleet_store, producer, clock)
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    w.tick()
    # 200 labelled frames scored by both: the serving model right on 194, the candidate on 120
    fleet_store.write_batch([shadow_window("CamA-h", 10, agree=120, correct=120)], [])
    clock.now += 1
    w.tick()
    r = state(fleet_store, rid)
    assert r["state"] == "rolled_back" and "live accuracy on the same 200 labelled frames" in r["reason"]
    assert r["shadow"]["candidate_correct"] == 120 and r["shadow"]["serving_correct"] == 194


def test_a_shadow_stage_without_enough_labels_times_out_to_a_rollback(fleet_store, producer):
    clock = FakeClock(1000.0)
    w = watcher(fleet_store, producer, clock)
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    w.tick()
    disagreements(fleet_store, "CamA-h", 100, 3, serving=2, shadow=5)
    clock.now += 61
    w.tick()
    r = state(fleet_store, rid)
    assert (
        r["state"] == "rolled_back"
        and "timed out after 60 s: needs 10 more labelled disagreements" in r["reason"]
    )


def test_rollback_by_hand_withdraws_a_shadow(fleet_store, producer):
    clock = FakeClock(1000.0)
    w = watcher(fleet_store, producer, clock)
    rid = register_rollout(fleet_store, "m-2", "CamA", POLICY, "test")["rollout"]
    w.tick()
    done = rollback(fleet_store, w.publisher, who="carol")
    assert done["ended"][0]["rollout"] == rid and done["published"] is None
    assert state(fleet_store, rid)["state"] == "rolled_back" and producer.shadowed("CamA-h") is None
    assert fleet_store.model("m-2")["status"] == "rolled_back"


def test_no_shadow_goes_to_the_canary_at_once(fleet_store, producer):
    w = watcher(fleet_store, producer, FakeClock(1000.0))
    rid = register_rollout(fleet_store, "m-2", "CamA", dataclasses.replace(POLICY, shadow=False), "t")[
        "rollout"
    ]
    w.tick()
    r = state(fleet_store, rid)
    assert r["state"] == "canary" and r["shadow"] is None and producer.envelopes[0].role == "serve"
