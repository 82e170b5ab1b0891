"""Retraining on its own: which trigger fires, never two at once, never during an undecided rollout."""

from __future__ import annotations

import hashlib
import threading

import pytest

from edgemnist.errors import ConfigError
from edgemnist.testing.fakes import FakeClock
from metro_app.rollout.policy import Policy
from metro_app.samples import make_image
from metro_app.testing import scored_window
from metro_app.training.auto import AutoPolicy, AutoRetrain, find_trigger
from metro_app.training.jobs import RetrainJobs
from metro_app.training.retrain import RetrainResult
from metro_app.training.settings import RetrainSettings

POLICY = AutoPolicy(labels=10, drift_labels=4)


@pytest.fixture
def labelled_store(store):
    """m-1 published, trained long ago; two cameras with 20 uncertain images each."""
    data = b"PK-m-1"
    store.add_model(
        "m-1", hashlib.sha256(data).hexdigest(), data, status="published", reason="x", created=1000.0
    )
    store.write_batch(
        [scored_window(c, 0, "m-1") for c in ("CamA-h", "CamB-h")],
        [make_image(c, n) for c in ("CamA-h", "CamB-h") for n in range(20)],
    )
    return store


def label(store, camera, ns):
    for n in ns:
        store.add_label(f"{camera}/r1/i{n}", str(n % 10), "alice")


class Runs:
    """A retrain that records the settings it was given and finishes when told."""

    def __init__(self) -> None:
        self.settings: list[RetrainSettings] = []
        self.release = threading.Event()

    def __call__(self, settings, progress):
        self.settings.append(settings)
        self.release.wait(10)
        return RetrainResult(None, "m-1", False, "nothing to learn")


def auto(store, runs, jobs=None):
    return AutoRetrain(
        store, jobs or RetrainJobs(lambda p: None), RetrainSettings(), runs, POLICY, clock=FakeClock(5000.0)
    )


def test_enough_new_labels_start_a_retrain_whose_candidate_goes_to_shadow(labelled_store):
    label(labelled_store, "CamA-h", range(6))
    label(labelled_store, "CamB-h", range(3))
    trigger, why = find_trigger(labelled_store, POLICY, None)
    assert trigger is None and why.startswith("9 new labels of 10")
    label(labelled_store, "CamB-h", range(3, 4))
    trigger, why = find_trigger(labelled_store, POLICY, None)
    assert trigger.kind == "labels" and "10 labels since m-1 was trained (at least 10)" in trigger.reason
    assert trigger.cameras == ("CamA-h",), "no camera drifts: the one with most new labels"

    runs = Runs()
    runs.release.set()
    a = auto(labelled_store, runs)
    job = a.tick()
    a.jobs.join(10)
    assert job["trigger"].startswith("auto-retrain (labels): 10 labels since m-1")
    assert runs.settings[0].canary == "CamA-h" and runs.settings[0].policy().shadow
    [row] = labelled_store.audit(person="auto-retrain")
    assert row["detail"]["trigger"] == "labels" and row["detail"]["shadow_on"] == ["CamA-h"]


def test_a_drifting_camera_with_enough_new_labels_triggers_before_the_count(labelled_store):
    labelled_store.add_alert("k1", "CamB-h", "accuracy", "2026-01-01T00:00:00Z", "drift", {})
    label(labelled_store, "CamB-h", range(3))
    assert find_trigger(labelled_store, POLICY, None)[0] is None
    label(labelled_store, "CamB-h", range(3, 4))
    trigger, _ = find_trigger(labelled_store, POLICY, None)
    assert trigger.kind == "drift" and trigger.cameras == ("CamB-h",)
    assert "drift alert open on CamB-h with new labels (CamB-h 4; at least 4)" in trigger.reason


def test_never_two_at_once(labelled_store):
    label(labelled_store, "CamA-h", range(12))
    runs = Runs()
    jobs = RetrainJobs(lambda p: None)
    a = auto(labelled_store, runs, jobs)
    assert a.tick() is not None
    assert (
        a.tick() is None
        and a.stats["waiting"].startswith("retrain r-")
        and "is running" in a.stats["waiting"]
    )
    runs.release.set()
    jobs.join(10)
    assert len(runs.settings) == 1


def test_never_during_an_undecided_rollout(labelled_store):
    data = b"PK-m-2"
    labelled_store.add_model("m-2", hashlib.sha256(data).hexdigest(), data, parent="m-1", status="candidate", reason="x",
                        created=1000.0)  # fmt: skip
    labelled_store.rollout_book().add("m-2", "m-1", ["CamA"], Policy(), "test")
    label(labelled_store, "CamA-h", range(12))
    trigger, why = find_trigger(labelled_store, POLICY, None)
    assert trigger is None and why == "rollout 1 of m-2 is undecided (pending)"


def test_a_refused_candidate_counts_as_newest_so_its_labels_are_not_tried_twice(labelled_store):
    label(labelled_store, "CamA-h", range(12))
    assert find_trigger(labelled_store, POLICY, None)[0] is not None
    data = b"PK-m-2"
    labelled_store.add_model(
        "m-2", hashlib.sha256(data).hexdigest(), data, parent="m-1", status="refused", reason="x"
    )
    trigger, why = find_trigger(labelled_store, POLICY, None)
    assert trigger is None and why.startswith("0 new labels of 10")


def test_bad_thresholds_are_refused_by_name():
    with pytest.raises(ConfigError, match="labels"):
        AutoPolicy(labels=0)
