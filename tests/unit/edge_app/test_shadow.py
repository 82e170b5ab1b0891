"""Shadow scoring at the edge: the window's figures, the disagreement frames and their cap, the watcher."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import numpy as np
import pytest

from edge_app.models import ModelWatcher, ServingModel
from edge_app.pipeline import UncertainStage
from edge_app.runner import StdoutSink, run_edge
from edge_app.saved_models import SavedModels, initial_shadow
from edge_app.settings import EdgeSettings
from edge_app.stages import FrameBatch, MetricsWindow, Scored, ShadowCap
from edge_app.trust import ModelTrust
from edgemnist.errors import ConfigError
from edgemnist.model import load_model
from edgemnist.wire.messages import EdgeConfig, MetricsMessage, ShadowStats, parse_message
from tests.helpers import FakeModelsReader, ModelsRecord, model_envelope

CAM = "RotB-host1"
UNSIGNED = ModelTrust(allow_unsigned=True)  # signatures are tested in test_trust.py
CONFIG = EdgeConfig(
    delay=0, repeat=1, source="bundled", confidence=0.5, classify_parallel=1, metrics_duration=5
)


def onehot(classes, p: float = 0.9) -> np.ndarray:
    out = np.full((len(classes), 10), (1 - p) / 9)
    out[np.arange(len(classes)), classes] = p
    return out


def scored(serving, shadow=None, version="m-2", p: float = 0.9) -> Scored:
    n = len(serving)
    return Scored(
        np.arange(n), np.zeros((n, 28, 28), np.uint8), onehot(serving, p), 0.001, 0.001, (), "m-1",
        None if shadow is None else onehot(shadow), None if shadow is None else version,
    )  # fmt: skip


def batch(n: int, labels=None, first: int = 0) -> FrameBatch:
    return FrameBatch(
        tuple(b"PNG%d" % i for i in range(n)), None if labels is None else np.asarray(labels),
        np.full(n, time.time()), first, "RotB-host1", "run1",
    )  # fmt: skip


# ----- the window's figures ---------------------------------------------------------------------


def test_a_window_counts_images_agreement_and_shadow_correct_where_labels_are_known() -> None:
    w = MetricsWindow(5.0, CONFIG)
    w.add(scored([1, 2, 3, 4], [1, 2, 3, 9]), labels=np.array([1, 2, 7, 9]))
    w.add(scored([5, 6], [5, 0]), labels=np.array([5, 6]))
    msg = w.close(time.time(), "RotB-host1", "run1", None, "m-1", shadow_held_back=2)
    assert msg is not None and msg.model_version == "m-1"
    # 6 images; agree on 1,2,3,5; shadow right on 1,2,9,5
    assert msg.shadow == ShadowStats("m-2", images=6, agree=4, correct=4, held_back=2)
    assert (msg.labelled, msg.correct) == (6, 4)  # the serving model's own figures are unchanged
    back = parse_message(msg.to_json())
    assert back.shadow.to_dict() == {"version": "m-2", "images": 6, "agree": 4, "correct": 4, "held_back": 2}


def test_without_labels_correct_is_absent_and_without_a_shadow_the_key_is_absent() -> None:
    w = MetricsWindow(5.0, CONFIG)
    w.add(scored([1, 2, 3], [1, 2, 4]))
    msg = w.close(time.time(), "RotB-host1", "run1", None, "m-1")
    assert msg.shadow == ShadowStats("m-2", images=3, agree=2, correct=None, held_back=0)
    assert "correct" not in msg.to_dict()["shadow"]
    w.add(scored([1, 2, 3]))
    plain = w.close(time.time(), "RotB-host1", "run1", None, "m-1")
    assert plain.shadow is None and "shadow" not in plain.to_dict()


def test_a_replaced_shadow_model_counts_afresh_in_the_window() -> None:
    w = MetricsWindow(5.0, CONFIG)
    w.add(scored([1, 2, 3], [1, 2, 4], version="m-2"))
    w.add(scored([1, 2], [1, 2], version="m-3"))
    msg = w.close(time.time(), "RotB-host1", "run1", None, "m-1")
    assert msg.shadow == ShadowStats("m-3", images=2, agree=2)


# ----- the disagreement frames and their cap ----------------------------------------------------


def test_disagreements_go_home_with_both_predictions_capped_per_window_and_counted() -> None:
    stage = UncertainStage(confidence=0.5, shadow_cap=3)
    serving, shadow = [1, 2, 3, 4, 5, 6], [7, 2, 8, 9, 0, 6]  # 4 disagreements: frames 0, 2, 3, 4
    sent = stage((batch(6), scored(serving, shadow)))
    assert [m.count for m in sent] == [0, 2, 3]
    assert [(m.result_class, m.shadow_predicted, m.shadow_version) for m in sent] == [
        (1, 7, "m-2"), (3, 8, "m-2"), (4, 9, "m-2"),
    ]  # fmt: skip
    assert all(len(m.shadow_scores) == 10 and m.shadow_scores[m.shadow_predicted] == 0.9 for m in sent)
    assert stage.shadow_cap.held_back == 1
    assert stage((batch(6, first=6), scored(serving, shadow))) == []  # the window's 3 are spent
    assert stage.shadow_cap.take_held_back() == 5  # 1 + 4 held back in this window
    sent = stage((batch(6, first=12), scored(serving, shadow)))  # a new window has room again
    assert [m.count for m in sent] == [12, 14, 15] and stage.shadow_cap.held_back == 1
    back = parse_message(sent[0].to_json())
    assert (back.shadow_version, back.shadow_predicted, back.result_class) == ("m-2", 7, 1)


def test_an_uncertain_frame_that_disagrees_is_sent_once_outside_the_cap() -> None:
    stage = UncertainStage(confidence=0.5, shadow_cap=0)
    sent = stage((batch(3), scored([1, 2, 3], [4, 2, 3], p=0.3)))  # all uncertain, frame 0 disagrees
    assert [m.count for m in sent] == [0, 1, 2]
    assert [m.shadow_predicted for m in sent] == [4, None, None]
    assert stage.shadow_cap.held_back == 0


def test_agreement_and_no_shadow_send_nothing_more() -> None:
    stage = UncertainStage(confidence=0.5)
    assert stage((batch(3), scored([1, 2, 3], [1, 2, 3]))) == []
    assert stage((batch(3), scored([1, 2, 3]))) == []


def test_the_cap_keeps_the_earliest_and_counts_the_rest() -> None:
    cap = ShadowCap(2)
    assert cap(["a", "b", "c"]) == ["a", "b"] and cap(["d"]) == []  # type: ignore[list-item]
    assert cap.take_held_back() == 2 and cap.held_back == 0
    assert cap(["e", "f", "g"]) == ["e", "f"]  # type: ignore[list-item]


def test_the_shadow_cap_setting_is_checked() -> None:
    assert EdgeSettings().shadow_cap == 20
    with pytest.raises(ConfigError, match="--shadow-cap"):
        EdgeSettings(shadow_cap=-1)


# ----- the watcher ------------------------------------------------------------------------------


def shadow_env(path: Path, targets=("RotB",)):
    return dataclasses.replace(model_envelope(path, targets=targets), role="shadow")


def rec(env, offset: int) -> ModelsRecord:
    return ModelsRecord(*env.to_record(), offset)


def test_a_shadow_record_is_verified_saved_and_scores_beside_the_serving_model(two_models, probe, tmp_path):
    a, b = two_models
    serving = ServingModel(load_model(a))
    store = SavedModels(tmp_path / "m")
    w = ModelWatcher(lambda: None, CAM, serving, store, probe, trust=UNSIGNED)
    env = shadow_env(b)
    w.feed([rec(env, 0), rec(shadow_env(b, targets=("RotA",)), 1)])  # another camera's shadow is not ours
    w.consider()
    assert serving.current().version == load_model(a).version  # still serving a
    assert serving.shadow() is not None and serving.shadow().version == env.version
    assert store.current() is None and store.shadow() == tmp_path / "m" / f"{env.version}.skops"
    # a restarted edge scores beside the same shadow model
    assert initial_shadow(SavedModels(tmp_path / "m")).version == env.version
    w.feed([ModelsRecord(b"shadow:RotB", None, 2)])  # a tombstone withdraws it
    w.consider()
    assert serving.shadow() is None and store.shadow() is None and initial_shadow(store) is None


def test_a_later_serving_record_ends_the_shadow_and_a_newer_shadow_replaces_it(two_models, probe, tmp_path):
    a, b = two_models
    serving = ServingModel(load_model(a))
    w = ModelWatcher(lambda: None, CAM, serving, SavedModels(tmp_path / "m"), probe, trust=UNSIGNED)
    w.feed([rec(shadow_env(b), 0)])
    w.consider()
    assert serving.shadow().version == load_model(b).version
    w.feed([rec(shadow_env(a), 1)])  # replaced
    w.consider()
    assert serving.shadow().version == load_model(a).version
    w.feed([rec(model_envelope(b, targets=("RotB",)), 2)])  # the rollout ended: b serves, no shadow
    w.consider()
    assert serving.current().version == load_model(b).version and serving.shadow() is None
    # replayed from the beginning in one go (a restart), the last word still wins
    serving2 = ServingModel(load_model(a))
    w2 = ModelWatcher(lambda: None, CAM, serving2, SavedModels(tmp_path / "m2"), probe, trust=UNSIGNED)
    w2.feed([rec(model_envelope(a), 0), rec(shadow_env(b), 1)])
    w2.consider()
    assert serving2.shadow().version == load_model(b).version


def test_a_role_that_does_not_match_its_key_is_refused(two_models, probe, tmp_path):
    a, b = two_models
    serving = ServingModel(load_model(a))
    w = ModelWatcher(lambda: None, CAM, serving, SavedModels(tmp_path / "m"), probe, trust=UNSIGNED)
    env = shadow_env(b)
    _, value = env.to_record()
    w.feed([ModelsRecord(b"RotB", value, 0)])  # a shadow envelope under a serving key: never served
    w.consider()
    assert serving.current().version == load_model(a).version and serving.shadow() is None
    assert [r.version for r in w.refused] == [env.version] and "shadow envelope" in w.refused[0].reason


@pytest.mark.parametrize("parallelism", [1, 2])
def test_every_worker_shadows_and_the_serving_model_decides_what_is_sent(two_models, tmp_path, parallelism):
    a, b = two_models
    env = shadow_env(b)
    out = io.StringIO()
    settings = EdgeSettings(
        model=a, camera="RotB", parallelism=parallelism, repeat=1, delay=0.005, batch_size=20,
        metrics_duration=0.5, outbox=tmp_path / "o.db", source="bundled", shadow_cap=2, confidence=0.0,
        allow_unsigned_models=True,
    )  # fmt: skip  # confidence 0: nothing is uncertain, so every image sent is a capped disagreement
    run_edge(settings, StdoutSink(out), models=FakeModelsReader([rec(env, 0)]))
    msgs = [parse_message(line) for line in out.getvalue().splitlines()]
    metrics = [m for m in msgs if isinstance(m, MetricsMessage)]
    a_version = load_model(a).version
    assert {m.model_version for m in metrics} == {a_version}  # the shadow model never serves
    shadowed = [m for m in metrics if m.shadow is not None]
    assert shadowed and {m.shadow.version for m in shadowed} == {env.version}
    assert all(m.shadow.images == m.total for m in shadowed[1:])  # once in, it scores every image
    assert all(m.shadow.correct <= m.shadow.images for m in shadowed)
    assert sum(m.shadow.agree for m in shadowed) < sum(m.shadow.images for m in shadowed)
    disagreements = [m for m in msgs if not isinstance(m, MetricsMessage) and m.shadow_version]
    assert disagreements and all(m.shadow_predicted != m.result_class for m in disagreements)
    assert all(m.model_version == a_version for m in disagreements)
    assert len(msgs) == len(metrics) + len(disagreements)
    assert len(disagreements) <= 2 * len(shadowed)  # at most the cap per window (windows depend on load)
    held = sum(m.shadow.held_back for m in shadowed)
    assert held > 0 and len(disagreements) + held == sum(m.shadow.images - m.shadow.agree for m in shadowed)
    # a restarted edge scores beside the shadow model at once, before reading the topic
    out2 = io.StringIO()
    run_edge(dataclasses.replace(settings, repeat=1), StdoutSink(out2), models=None)
    again = [parse_message(line) for line in out2.getvalue().splitlines()]
    first = next(m for m in again if isinstance(m, MetricsMessage))
    assert (
        first.shadow is not None
        and first.shadow.version == env.version
        and first.shadow.images == first.total
    )
