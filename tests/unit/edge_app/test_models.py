"""The edge's model hot-swap with fakes: which record wins, what is refused and why, what is kept."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_app import models as models_mod
from edge_app.models import ModelWatcher, SavedModels, ServingModel, initial_model, key_applies, probe_model
from edge_app.runner import StdoutSink, run_edge
from edge_app.settings import EdgeSettings
from edge_app.trust import ModelTrust
from edgemnist.errors import ModelError
from edgemnist.model import Model, load_model
from edgemnist.wire.envelope import ModelEnvelope
from edgemnist.wire.messages import MetricsMessage, parse_message
from metro_app.testing import wait_until
from tests.helpers import FakeModelsReader, ModelsRecord, model_envelope

CAM = "RotB-host1"


# these tests are about choosing and loading models; signatures are tested in test_trust.py
UNSIGNED = ModelTrust(allow_unsigned=True)


def rec(env: ModelEnvelope, offset: int) -> ModelsRecord:
    key, value = env.to_record()
    return ModelsRecord(key, value, offset)


def watcher_for(
    path: Path, tmp: Path, probe: np.ndarray, camera: str = CAM
) -> tuple[ModelWatcher, ServingModel]:
    serving = ServingModel(load_model(path))
    return ModelWatcher(
        lambda: None, camera, serving, SavedModels(tmp / "models-RotB"), probe, trust=UNSIGNED
    ), serving


def test_key_applies_to_every_camera_or_the_named_ones():
    assert key_applies(b"*", CAM) and key_applies(None, CAM)
    assert key_applies(b"RotA,RotB", CAM) and key_applies(b"RotB-host1", CAM)
    assert not key_applies(b"RotA", CAM) and not key_applies(b"Rot", CAM)


def test_the_last_record_for_this_camera_wins_and_is_saved(two_models, probe, tmp_path):
    a, b = two_models
    w, serving = watcher_for(a, tmp_path, probe)
    env_b, env_other = model_envelope(b), model_envelope(a, targets=("RotA",))
    w.feed([rec(env_b, 0), rec(env_other, 1)])  # a later record for another camera does not count
    model = w.consider()
    assert model is not None and serving.current().version == env_b.version == model.version
    saved = tmp_path / "models-RotB" / f"{env_b.version}.skops"
    assert model.path == saved and saved.read_bytes() == b.read_bytes()
    card = json.loads(saved.with_suffix(".json").read_text())
    assert (card["version"], card["sha256"]) == (env_b.version, env_b.sha256) and card["accepted"]
    assert SavedModels(tmp_path / "models-RotB").current() == saved
    # a restarted edge serves it at once, whatever --model says
    assert initial_model(a, SavedModels(tmp_path / "models-RotB")).version == env_b.version
    assert w.consider() is None and serving.pending_refusals() == ()


def test_a_later_record_with_an_older_version_is_a_rollback(two_models, probe, tmp_path):
    a, b = two_models
    w, serving = watcher_for(a, tmp_path, probe)
    env_a, env_b = model_envelope(a), model_envelope(b, parent=model_envelope(a).version)
    w.feed([rec(env_b, 0)])
    w.consider()
    assert serving.current().version == env_b.version
    w.feed([rec(env_a, 1)])
    assert w.consider() is not None and serving.current().version == env_a.version
    assert w.accepted == [env_b.version, env_a.version]
    # the same model again at a new offset changes nothing
    w.feed([rec(env_a, 2)])
    assert w.consider() is None and serving.current().version == env_a.version


def test_within_one_poll_topic_order_decides(two_models, probe, tmp_path):
    a, b = two_models
    w, serving = watcher_for(a, tmp_path, probe)
    w.feed([rec(model_envelope(b), 0), rec(model_envelope(a, targets=("RotB",)), 1)])
    w.consider()
    assert serving.current().version == model_envelope(a).version and w.accepted == []


def test_tampered_bytes_are_refused_once_and_never_retried(two_models, probe, tmp_path):
    a, b = two_models
    w, serving = watcher_for(a, tmp_path, probe)
    good = model_envelope(b)
    data = bytearray(good.data)
    data[len(data) // 2] ^= 0xFF
    bad = dataclasses.replace(good, data=bytes(data))  # card (version, sha256) kept
    w.feed([rec(bad, 0)])
    assert w.consider() is None
    assert serving.current().version == model_envelope(a).version
    (refusal,) = serving.pending_refusals()
    assert refusal.version == good.version and "sha256" in refusal.reason and "tampered" in refusal.reason
    w.feed([rec(bad, 0)])  # read again after a reconnect
    w.feed([rec(bad, 5)])  # or published again
    w.consider()
    assert len(serving.pending_refusals()) == 1 and w.refused == [refusal]
    serving.reported(1)
    assert serving.pending_refusals() == ()
    assert not (tmp_path / "models-RotB" / f"{good.version}.skops").exists()


def test_the_serving_version_with_other_bytes_is_refused_too(two_models, probe, tmp_path):
    a, _ = two_models
    w, serving = watcher_for(a, tmp_path, probe)
    same = model_envelope(a)
    w.feed([rec(dataclasses.replace(same, data=same.data + b"x"), 0)])
    w.consider()
    assert [r.version for r in serving.pending_refusals()] == [same.version]


def test_foreign_types_are_refused_before_anything_is_built(two_models, probe, tmp_path):
    import skops.io as sio
    from sklearn.tree import DecisionTreeClassifier

    a, _ = two_models
    tree = DecisionTreeClassifier().fit(np.eye(10), np.arange(10))
    data = sio.dumps(tree)
    env = ModelEnvelope("m-tree", hashlib.sha256(data).hexdigest(), data)
    w, serving = watcher_for(a, tmp_path, probe)
    w.feed([rec(env, 0)])
    w.consider()
    (refusal,) = serving.pending_refusals()
    assert refusal.version == "m-tree" and "allow-list" in refusal.reason and "DecisionTree" in refusal.reason


def test_malformed_envelopes_for_this_camera_are_refused_others_ignored(two_models, probe, tmp_path):
    a, b = two_models
    w, serving = watcher_for(a, tmp_path, probe)
    w.feed([ModelsRecord(b"RotA", b"garbage", 0)])
    assert w.consider() is None and serving.pending_refusals() == ()
    key, value = model_envelope(b).to_record()
    w.feed([ModelsRecord(b"*", value[:-10], 1)])  # size in the header no longer matches
    w.consider()
    (refusal,) = serving.pending_refusals()
    assert refusal.version == model_envelope(b).version and "malformed envelope" in refusal.reason
    w.feed([ModelsRecord(b"*", b"garbage", 2)])
    w.consider()
    assert serving.pending_refusals()[1].version == "models[0]@2"


def test_a_model_with_wrong_output_fails_the_probe(two_models, probe, tmp_path, monkeypatch):
    a, b = two_models

    class OneRow:
        classes_ = np.arange(10)

        def predict_proba(self, x):
            return np.full((1, 10), 0.1)

    class NotNormalised(OneRow):
        def predict_proba(self, x):
            return np.full((len(x), 10), 0.5)

    class NaNs(OneRow):
        def predict_proba(self, x):
            return np.full((len(x), 10), np.nan)

    with pytest.raises(ModelError, match=r"output shape \(1, 10\), expected \(32, 10\)"):
        probe_model(Model(OneRow(), "m-1", ""), probe)
    with pytest.raises(ModelError, match="NaN"):
        probe_model(Model(NaNs(), "m-nan", ""), probe)
    with pytest.raises(ModelError, match="sum to 1"):
        probe_model(Model(NotNormalised(), "m-n", ""), probe)
    monkeypatch.setattr(
        models_mod, "load_model_bytes", lambda data, **kw: Model(NotNormalised(), kw["version"], "")
    )
    w, serving = watcher_for(a, tmp_path, probe)
    w.feed([rec(model_envelope(b), 0)])
    w.consider()
    assert serving.current().version == model_envelope(a).version
    assert "probe" in serving.pending_refusals()[0].reason


def test_the_thread_waits_for_the_topic_then_swaps(two_models, probe, tmp_path):
    a, b = two_models
    serving = ServingModel(load_model(a))
    reader = FakeModelsReader([rec(model_envelope(b), 0)], missing_first=2)
    watcher = ModelWatcher(
        reader,
        CAM,
        serving,
        SavedModels(tmp_path / "m"),
        probe,
        poll_timeout=0.05,
        retry=0.05,
        trust=UNSIGNED,
    )
    with watcher:
        wait_until(lambda: serving.current().version == model_envelope(b).version, 30, "the swap", every=0.05)
    assert serving.current().version == model_envelope(b).version and reader.opens == 3
    assert (reader.made, reader.closed) == (1, 1)  # one reader, asked again while the topic was missing


@pytest.mark.parametrize("parallelism", [1, 2])
def test_run_edge_swaps_between_batches_and_windows_carry_one_version(two_models, tmp_path, parallelism):
    """A whole edge in-process (worker processes for parallelism 2): every frame scored once."""
    a, b = two_models
    env_b = model_envelope(b)
    gate = threading.Event()

    class SlowReader(FakeModelsReader):
        def poll(self, timeout: float):
            if not gate.wait(timeout):
                return []
            return super().poll(timeout)

    reader = SlowReader([rec(env_b, 0)], missing_first=0)
    out = io.StringIO()
    settings = EdgeSettings(
        model=a, camera="RotB", parallelism=parallelism, repeat=1, delay=0.004, batch_size=20,
        metrics_duration=60, outbox=tmp_path / "o.db", source="bundled", allow_unsigned_models=True,
    )  # fmt: skip

    open_gate = threading.Timer(1.0, gate.set)  # the model arrives a second into a 4 s run
    open_gate.start()
    try:
        stats = run_edge(settings, StdoutSink(out), models=reader)
    finally:
        open_gate.cancel()
    msgs = [parse_message(line) for line in out.getvalue().splitlines()]
    metrics = [m for m in msgs if isinstance(m, MetricsMessage)]
    versions = [m.model_version for m in metrics]
    a_version = load_model(a).version
    assert stats.model_versions == [a_version, env_b.version], stats
    assert versions[0] == a_version and versions[-1] == env_b.version
    assert versions == sorted(versions, key=[a_version, env_b.version].index), "one swap, never back"
    assert sum(m.total for m in metrics) == stats.scored == 1000
    assert sum(m.labelled for m in metrics) == 1000
    assert sum(m.correct for m in metrics) == stats.correct
    images = [m for m in msgs if not isinstance(m, MetricsMessage)]
    assert len({m.count for m in images}) == len(images) == stats.uncertain_sent
    assert {m.model_version for m in images} <= {a_version, env_b.version}
    assert (tmp_path / f"models-RotB/{env_b.version}.skops").is_file()


def test_model_refused_always_says_why_even_for_an_unexpected_error(two_models, probe, tmp_path, monkeypatch):
    """Issue 24.6: an error the loader did not foresee still becomes a refusal naming it."""
    a, b = two_models

    def choke(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

    monkeypatch.setattr(models_mod, "load_model_bytes", choke)
    w, serving = watcher_for(a, tmp_path, probe)
    w.feed([rec(model_envelope(b), 0)])
    assert w.consider() is None
    (refusal,) = serving.pending_refusals()
    assert refusal.version == model_envelope(b).version
    assert "RecursionError" in refusal.reason and "recursion depth" in refusal.reason


def test_a_record_dated_in_the_future_does_not_win_over_later_records(two_models, probe, tmp_path):
    """Issue 24.7: order is the registry's (topic order), never the sender's record timestamp."""
    a, b = two_models
    w, serving = watcher_for(a, tmp_path, probe)
    env_a, env_b = model_envelope(a), model_envelope(b)
    year_2100 = 4_102_444_800_000
    w.feed(
        [
            ModelsRecord(*env_a.to_record(), offset=0, timestamp=year_2100),
            ModelsRecord(*env_b.to_record(), offset=1),
        ]
    )
    w.consider()
    assert serving.current().version == env_b.version
    w.feed(
        [ModelsRecord(*env_a.to_record(), offset=2, timestamp=year_2100)]
    )  # a later record: it is the newest
    w.feed([ModelsRecord(*env_b.to_record(), offset=1)])  # re-delivered earlier record: stays earlier
    w.consider()
    assert serving.current().version == env_a.version


def test_without_a_models_topic_the_configured_model_is_served(two_models, probe, tmp_path):
    """Issue 24.7: `--models-topic ''` with `--model` serves that model, not one saved from the topic."""
    a, b = two_models
    w, serving = watcher_for(a, tmp_path, probe)
    w.feed([rec(model_envelope(b), 0)])
    w.consider()
    store = SavedModels(tmp_path / "models-RotB")
    assert initial_model(a, store).version == model_envelope(b).version
    assert initial_model(a, store, follow=False).version == load_model(a).version
