"""`metro-app models import`, `models`, `rollout`, POST /models/{version}/rollout and `retrain --canary`, without a broker."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from edgemnist.model import load_model
from metro_app.api.app import create_app
from metro_app.cli import main
from metro_app.store import Store
from metro_app.store.rollouts import RolloutBook
from metro_app.testing import scored_window
from metro_app.training.retrain import RetrainSettings, retrain
from tests.helpers import train_small_model


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A second model trained elsewhere: an `edge-mnist train`-style skops file with its card."""
    return train_small_model(tmp_path_factory.mktemp("elsewhere"))


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_import_verifies_evaluates_and_registers_a_candidate_then_the_table_shows_it(
    tmp_path, model_path, other_model, capsys
):
    url = f"sqlite:///{tmp_path}/hub.db"
    tampered = tmp_path / "bad" / other_model.name
    tampered.parent.mkdir()
    shutil.copy(other_model.with_suffix(".json"), tampered.with_suffix(".json"))
    data = bytearray(other_model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    assert main(["models", "import", str(tampered), "--store", url, "--model", str(model_path), "-q"]) == 2
    assert "sha256" in capsys.readouterr().err

    assert main(["models", "import", str(other_model), "--store", url, "--model", str(model_path), "-q"]) == 0
    got = last_json(capsys)
    initial, imported = load_model(model_path).version, load_model(other_model).version
    assert (got["version"], got["status"], got["parent"]) == (imported, "candidate", initial)
    assert 0.5 < got["base_accuracy"] < got["parent_base_accuracy"] <= 1.0  # both scored on the base hold-out
    assert got["field_accuracy"] is None and "imported from" in got["reason"] and "refused" in got["reason"]
    assert main(["models", "import", str(other_model), "--store", url, "--model", str(model_path)]) == 2
    assert "already in the registry" in capsys.readouterr().err

    assert main(["models", "--store", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["version", "status"] and out[0].split()[-1] == "rollout"
    assert out[1].startswith(imported) and "candidate" in out[1]
    assert "candidate" in out[2] and "imported from" in out[2]  # its transitions, under it
    assert any(line.startswith(initial) and "serving" in line for line in out)

    # a rollout needs windows from its canary cameras to compare with
    assert main(["rollout", imported, "--canary", "CamA", "--store", url]) == 2
    assert "CamA: no metrics windows" in capsys.readouterr().err
    store = Store(url)
    store.write_batch([scored_window("CamA-h", 1, initial)], [])
    store.close()
    assert main(["rollout", imported, "--canary", "CamA", "--windows", "4", "--store", url]) == 0
    r = last_json(capsys)
    assert (r["state"], r["version"], r["parent"], r["targets"], r["windows"]) == (
        "pending", imported, initial, ["CamA"], 4
    )  # fmt: skip
    assert main(["models", "--store", url, "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rows[0]["rollout"]["state"] == "pending" and rows[0]["rollout"]["targets"] == ["CamA"]


def test_the_api_registers_a_rollout_with_the_token_and_lists_it(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    try:
        store.add_model("m-1", "0" * 64, b"1", status="published", reason="initial")
        store.add_model("m-2", "1" * 64, b"2", parent="m-1", reason="trained")
        store.write_batch([scored_window("CamA-h", 1, "m-1")], [])
        client = TestClient(create_app(store, token="t"))
        auth = {"Authorization": "Bearer t"}
        assert client.post("/models/m-2/rollout", json={"canary": ["CamA"]}).status_code == 401
        assert client.post("/models/m-9/rollout", json={"canary": ["CamA"]}, headers=auth).status_code == 404
        bad = client.post("/models/m-2/rollout", json={"canary": ["CamZ"]}, headers=auth)
        assert bad.status_code == 422 and "CamZ" in bad.json()["detail"]
        ok = client.post("/models/m-2/rollout", json={"canary": ["CamA"], "windows": 2}, headers=auth)
        assert ok.status_code == 201 and ok.json()["state"] == "pending" and ok.json()["windows"] == 2
        busy = client.post("/models/m-2/rollout", json={"canary": ["CamA"]}, headers=auth)
        assert busy.status_code == 409 and "still running" in busy.json()["detail"]
        [listed] = client.get("/rollouts").json()["rollouts"]
        assert listed["rollout"] == ok.json()["rollout"] and listed["trigger"] == "POST /models/m-2/rollout"
        assert client.get(f"/rollouts/{listed['rollout']}").json()["targets"] == ["CamA"]
        assert client.get("/rollouts/99").status_code == 404
        m2 = client.get("/models").json()["models"][0]
        assert m2["version"] == "m-2" and m2["rollout"]["state"] == "pending"
    finally:
        store.close()


class NoPublisher:
    def publish(self, store, version, *a, **kw):
        raise AssertionError("an accepted model with --canary must not go to every camera")


def test_retrain_with_a_canary_registers_a_rollout_instead_of_publishing(tmp_path, model_path):
    from tests.loop_data import rotated_uncertain

    store = Store(f"sqlite:///{tmp_path}/hub.db")
    try:
        msgs = rotated_uncertain(model_path, 150)
        store.write_batch([scored_window("RotA-h", 1, load_model(model_path).version)], msgs)
        for m in msgs:
            store.add_label(m.id, str(m.true_class), "ana")
        settings = RetrainSettings(model=str(model_path), canary="RotA", canary_windows=7)
        result = retrain(store, settings, publisher=NoPublisher())
        assert result.accepted and result.status == "candidate" and result.rollout is not None, result.reason
        assert f"canary rollout {result.rollout} on RotA registered" in result.reason
        r = RolloutBook(store).get(result.rollout)
        assert (r["version"], r["state"], r["targets"], r["windows"]) == (
            result.version,
            "pending",
            ["RotA"],
            7,
        )
        assert r["trigger"] == f"retrain of {result.version}"
    finally:
        store.close()


def test_models_flags_given_before_import_are_kept(monkeypatch) -> None:
    """`metro-app models --store X import PATH` used the default store: the subcommand's default won."""
    from metro_app.cli import build_parser

    monkeypatch.delenv("EDGE_MNIST_STORE", raising=False)
    parse = build_parser().parse_args
    assert parse(["models", "--store", "sqlite:///a.db", "-v", "import", "m.skops"]).store == "sqlite:///a.db"
    assert parse(["models", "--store", "sqlite:///a.db", "-v", "import", "m.skops"]).verbose is True
    assert parse(["models", "import", "m.skops", "--store", "sqlite:///b.db"]).store == "sqlite:///b.db"
    assert parse(
        ["models", "--store", "sqlite:///a.db", "import", "m.skops", "--store", "sqlite:///b.db"]
    ).store == ("sqlite:///b.db")
    monkeypatch.setenv("EDGE_MNIST_STORE", "sqlite:///env.db")
    assert build_parser().parse_args(["models", "import", "m.skops"]).store == "sqlite:///env.db"


def test_import_with_trusted_keys_takes_only_a_model_a_trusted_key_signed(
    tmp_path, model_path, other_model, capsys
):
    """Issue 21: a model file carries its signature into `models import`, checked before anything is stored."""
    from edgemnist.signing import SigningKey

    key, stranger = SigningKey.generate(), SigningKey.generate()
    (tmp_path / "trusted.pub").write_text(key.public_line() + "\n")
    model = load_model(other_model)
    url = f"sqlite:///{tmp_path}/hub.db"
    args = ["models", "import", str(other_model), "--store", url, "--model", str(model_path),
            "--trusted-keys", str(tmp_path / "trusted.pub"), "-q"]  # fmt: skip

    def card(signer):
        sig = signer.sign_model(other_model.read_bytes(), version=model.version, parent=None)
        return {"version": model.version, "parent": None, "targets": None, "signature": sig.to_json()}

    sig_file = tmp_path / "m.sig.json"
    sig_file.write_text(json.dumps(card(stranger)))
    assert main([*args, "--signature", str(sig_file)]) == 2
    assert "not imported: unknown key" in capsys.readouterr().err
    assert main(args) == 2  # the card beside the model holds no signature
    assert "not imported: unsigned" in capsys.readouterr().err
    store = Store(url)
    try:
        assert store.model(model.version) is None  # nothing was stored
    finally:
        store.close()
    sig_file.write_text(json.dumps(card(key)))
    assert main([*args, "--signature", str(sig_file)]) == 0
    assert last_json(capsys)["version"] == model.version
