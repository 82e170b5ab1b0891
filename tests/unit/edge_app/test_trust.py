"""The edge's signature policy in the model watcher: what it serves, what it refuses and reports."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from edge_app.models import ModelWatcher, ServingModel
from edge_app.saved_models import SavedModels
from edge_app.trust import ModelTrust
from edgemnist.model import load_model
from edgemnist.signing import SigningKey, TrustedKeys
from tests.helpers import ModelsRecord, model_envelope, train_small_model

CAM = "RotB-host1"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("trust-models")
    a = train_small_model(out, n=800, seed=0)
    b = train_small_model(out / "b", n=900, seed=1)
    return a, b


@pytest.fixture(scope="module")
def hub_key() -> SigningKey:
    return SigningKey.generate()


def watcher(path: Path, tmp: Path, probe: np.ndarray, trust: ModelTrust) -> tuple[ModelWatcher, ServingModel]:
    serving = ServingModel(load_model(path))
    return ModelWatcher(lambda: None, CAM, serving, SavedModels(tmp / "m"), probe, trust=trust), serving


def offer(w: ModelWatcher, env, offset: int):  # noqa: ANN001, ANN202
    w.feed([ModelsRecord(*env.to_record(), offset)])
    return w.consider()


def test_with_trusted_keys_unsigned_and_foreign_models_are_refused_and_reported(
    models, probe, tmp_path, hub_key
):
    a, b = models
    w, serving = watcher(a, tmp_path, probe, ModelTrust(TrustedKeys.parse(hub_key.public_line())))
    assert offer(w, model_envelope(b), 0) is None
    assert offer(w, model_envelope(b).signed(SigningKey.generate()), 1) is None
    reasons = [r.reason for r in serving.pending_refusals()]
    assert reasons[0].startswith("unsigned") and reasons[1].startswith("unknown key")
    assert serving.current().version == load_model(a).version  # the old model keeps serving
    signed = offer(w, model_envelope(b).signed(hub_key), 2)  # same version, now signed: served
    assert signed is not None and serving.current().version == load_model(b).version


def test_a_model_signed_for_other_cameras_is_refused_when_replayed_to_this_one(
    models, probe, tmp_path, hub_key
):
    a, b = models
    w, serving = watcher(a, tmp_path, probe, ModelTrust(TrustedKeys.parse(hub_key.public_line())))
    for_rota = model_envelope(b, targets=("RotA",)).signed(hub_key)
    replayed = model_envelope(b, targets=("RotB",))
    replayed = dataclasses.replace(replayed, signature=for_rota.signature)
    assert offer(w, replayed, 0) is None
    assert serving.pending_refusals()[0].reason.startswith("bad signature")


def test_allow_unsigned_models_serves_unsigned_with_a_warning_but_still_checks_signed_ones(
    models, probe, tmp_path, hub_key, caplog
):
    a, b = models
    trust = ModelTrust(TrustedKeys.parse(hub_key.public_line()), allow_unsigned=True)
    w, serving = watcher(a, tmp_path, probe, trust)
    assert offer(w, model_envelope(b, targets=("RotB",)).signed(SigningKey.generate()), 0) is None
    with caplog.at_level(logging.WARNING, logger="edge_app.trust"):
        assert offer(w, model_envelope(b), 1) is not None
    assert "unsigned" in caplog.text


def test_without_trusted_keys_every_model_is_refused_and_the_start_up_says_why(
    models, probe, tmp_path, caplog, monkeypatch
):
    """No --trusted-keys and no hub.pub of a hub on this machine: nothing is served, and the edge says so."""
    monkeypatch.setenv("EDGE_MNIST_STATE_DIR", str(tmp_path / "state"))
    a, b = models
    trust = ModelTrust.from_file(None)
    with caplog.at_level(logging.WARNING, logger="edge_app.trust"):
        trust.describe()
    assert "every model published on the models topic will be REFUSED" in caplog.text
    w, serving = watcher(a, tmp_path, probe, trust)
    assert offer(w, model_envelope(b), 0) is None
    [refusal] = serving.pending_refusals()
    assert "trusts no key" in refusal.reason and "--trusted-keys" in refusal.reason


def test_without_trusted_keys_the_hub_key_on_this_machine_is_trusted_once_it_exists(
    models, probe, tmp_path, hub_key, monkeypatch
):
    """A hub started after the edge makes its key pair in the shared state dir; the edge then trusts it."""
    from edgemnist.signing import default_signing_key

    monkeypatch.setenv("EDGE_MNIST_STATE_DIR", str(tmp_path / "state"))
    a, b = models
    trust = ModelTrust.from_file(None)
    w, serving = watcher(a, tmp_path, probe, trust)
    key, path, made = default_signing_key()
    assert made and path.stat().st_mode & 0o077 == 0 and default_signing_key()[0].key_id == key.key_id
    assert offer(w, model_envelope(b).signed(hub_key), 0) is None  # a key the hub here does not hold
    assert offer(w, model_envelope(b).signed(key), 1) is not None  # the hub's own key
    assert serving.current().version == load_model(b).version


def test_allow_unsigned_models_without_keys_serves_with_a_warning(
    models, probe, tmp_path, caplog, monkeypatch
):
    monkeypatch.setenv("EDGE_MNIST_STATE_DIR", str(tmp_path / "state"))
    a, b = models
    trust = ModelTrust.from_file(None, allow_unsigned=True)
    with caplog.at_level(logging.WARNING, logger="edge_app.trust"):
        trust.describe()
        w, serving = watcher(a, tmp_path, probe, trust)
        assert offer(w, model_envelope(b), 0) is not None
    assert "NOT for origin" in caplog.text and "without checking who made it" in caplog.text
    assert serving.pending_refusals() == ()


def test_a_replayed_older_signed_record_is_refused_also_after_a_restart(models, probe, tmp_path, hub_key):
    """Issue 24.7: a record the hub once signed, written to the topic again later, cannot roll a camera back."""
    a, b = models
    trust = ModelTrust(TrustedKeys.parse(hub_key.public_line()))
    old = dataclasses.replace(model_envelope(a), seq=3).signed(hub_key)
    new = dataclasses.replace(model_envelope(b), seq=5).signed(hub_key)
    w, serving = watcher(a, tmp_path, probe, trust)
    assert offer(w, new, 0) is not None
    assert offer(w, old, 1) is None  # the replay comes later in the topic, with its old number
    [refusal] = serving.pending_refusals()
    assert refusal.reason == "replayed: publication 3 is older than publication 5 of the model serving"
    restarted, again = watcher(b, tmp_path, probe, trust)  # the same state directory
    assert offer(restarted, old, 1) is None and again.current().version == load_model(b).version
    rollback = dataclasses.replace(model_envelope(a), seq=6).signed(hub_key)  # a genuine rollback: new number
    assert offer(restarted, rollback, 2) is not None
