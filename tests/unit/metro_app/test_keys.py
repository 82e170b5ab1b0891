"""The hub's side of signing: `metro-app keys`, signed publishing, signed model files checked offline."""

from __future__ import annotations

import hashlib
import json
import stat

from fastapi.testclient import TestClient

from edgemnist.signing import SigningKey, TrustedKeys
from edgemnist.wire.envelope import ModelEnvelope
from metro_app.api.app import create_app
from metro_app.cli import main
from metro_app.rollout.publish import ModelPublisher
from metro_app.store import Store

DATA = b"PK-model-bytes"


class Meta:
    partition, offset = 0, 7


class Future:
    def get(self, timeout=None):
        return Meta()


class Producer:
    def __init__(self):
        self.sent = []

    def send(self, topic, key=None, value=None):
        self.sent.append((key, value))
        return Future()

    def flush(self, timeout=None):
        pass


def store_with_model(tmp_path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/hub.db")
    s.add_model("m-1", "0" * 64, b"one", status="published", reason="initial")
    s.add_model("m-2", hashlib.sha256(DATA).hexdigest(), DATA, parent="m-1", reason="accepted")
    return s


def test_keys_init_and_show_print_only_the_public_key(tmp_path, capsys):
    assert main(["keys", "init", "--dir", str(tmp_path / "k")]) == 0
    out, err = capsys.readouterr()
    private = (tmp_path / "k" / "hub.key").read_text()
    assert stat.S_IMODE((tmp_path / "k" / "hub.key").stat().st_mode) == 0o600
    assert out.strip() == (tmp_path / "k" / "hub.pub").read_text().strip()
    assert private.splitlines()[1] not in out + err
    assert main(["keys", "show", "--dir", str(tmp_path / "k")]) == 0
    assert capsys.readouterr().out.strip() == out.strip()


def test_a_publisher_with_a_key_signs_for_the_audience(tmp_path):
    store, key, producer = store_with_model(tmp_path), SigningKey.generate(), Producer()
    try:
        ModelPublisher(topic="models", producer=producer, signing_key=key).publish(store, "m-2", ("RotB",))
    finally:
        store.close()
    env = ModelEnvelope.from_record(*producer.sent[0])
    assert env.signature is not None and env.signature.key == key.key_id
    assert env.check_signature(TrustedKeys.parse(key.public_line())) is None


def test_a_model_file_from_the_api_checks_offline_with_keys_verify(tmp_path, capsys):
    store, key = store_with_model(tmp_path), SigningKey.generate()
    (tmp_path / "hub.pub").write_text(key.public_line() + "\n")
    (tmp_path / "other.pub").write_text(SigningKey.generate().public_line() + "\n")
    try:
        with TestClient(create_app(store, token=None, signing_key=key)) as c:
            r = c.get("/models/m-2/file")
            card = c.get("/models/m-2/signature").json()
        with TestClient(create_app(store, token=None)) as c:
            assert "x-model-signature" not in c.get("/models/m-2/file").headers
            assert c.get("/models/m-2/signature").status_code == 404
    finally:
        store.close()
    assert r.content == DATA and json.loads(r.headers["x-model-signature"]) == card
    (tmp_path / "m-2.skops").write_bytes(r.content)
    (tmp_path / "m-2.sig.json").write_text(json.dumps(card))
    model = str(tmp_path / "m-2.skops")
    assert main(["keys", "verify", model, "--trusted-keys", str(tmp_path / "hub.pub")]) == 0
    assert "signature OK" in capsys.readouterr().out
    assert main(["keys", "verify", model, "--trusted-keys", str(tmp_path / "other.pub")]) == 1
    assert "unknown key" in capsys.readouterr().out
    (tmp_path / "m-2.skops").write_bytes(DATA + b"tampered")
    assert main(["keys", "verify", model, "--trusted-keys", str(tmp_path / "hub.pub")]) == 1
    assert "bad signature" in capsys.readouterr().out


def test_an_edges_saved_model_and_card_check_offline_publication_number_included(tmp_path, capsys):
    """The card an edge saves beside an accepted model holds the signed header, `seq` too."""
    from edge_app.saved_models import SavedModels

    key = SigningKey.generate()
    (tmp_path / "hub.pub").write_text(key.public_line() + "\n")
    env = ModelEnvelope("m-2", hashlib.sha256(DATA).hexdigest(), DATA, parent="m-1", seq=17).signed(key)
    path = SavedModels(tmp_path / "models-RotB").save(env)
    assert main(["keys", "verify", str(path), "--trusted-keys", str(tmp_path / "hub.pub")]) == 0
    assert "signature OK" in capsys.readouterr().out
