"""Model signatures: what a trusted key's signature proves, and what it refuses."""

from __future__ import annotations

import stat

import pytest

from edgemnist.errors import ConfigError, SchemaError
from edgemnist.signing import SigningKey, TrustedKeys, init_keys
from edgemnist.wire.envelope import ModelEnvelope

DATA = b"PK\x03\x04 model bytes"
SHA = "0" * 64


def envelope(**kw) -> ModelEnvelope:
    return ModelEnvelope(kw.pop("version", "m-2"), SHA, kw.pop("data", DATA), **kw)


def test_a_signed_envelope_survives_the_wire_and_verifies():
    key = SigningKey.generate()
    env = envelope(targets=("RotB",), parent="m-1").signed(key)
    back = ModelEnvelope.from_record(*env.to_record())
    assert back.signature == env.signature
    assert back.check_signature(TrustedKeys.parse(key.public_line())) is None


@pytest.mark.parametrize(
    "change",
    [
        {"targets": ("RotA",)},  # replayed to other cameras
        {"targets": None},  # replayed to every camera
        {"parent": "m-0"},
        {"version": "m-3"},
        {"data": DATA + b"!"},
    ],
)
def test_a_signature_does_not_cover_another_audience_header_or_model(change):
    key = SigningKey.generate()
    signed = envelope(targets=("RotB",), parent="m-1").signed(key)
    fields = {"version": "m-2", "data": DATA, "targets": ("RotB",), "parent": "m-1", **change}
    forged = envelope(**fields, signature=signed.signature)
    why = forged.check_signature(TrustedKeys.parse(key.public_line()))
    assert why is not None and why.startswith("bad signature")


def test_unsigned_and_unknown_keys_are_refused_with_the_reason():
    trusted = TrustedKeys.parse(SigningKey.generate().public_line())
    assert trusted.check_model(DATA, None, version="m") == "unsigned: the model carries no signature"
    stranger = envelope().signed(SigningKey.generate())
    why = stranger.check_signature(trusted)
    assert why is not None and why.startswith("unknown key") and stranger.signature.key in why


def test_two_trusted_keys_let_a_key_rotate():
    old, new = SigningKey.generate(), SigningKey.generate()
    trusted = TrustedKeys.parse(f"# rotation\n{old.public_line()}\n\n{new.public_line()}\n")
    assert len(trusted) == 2
    assert envelope().signed(old).check_signature(trusted) is None
    assert envelope().signed(new).check_signature(trusted) is None


def test_keys_init_writes_a_private_key_only_its_owner_reads(tmp_path):
    key = init_keys(tmp_path / "k")
    priv, pub = tmp_path / "k" / "hub.key", tmp_path / "k" / "hub.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub.read_text().strip() == key.public_line()
    assert SigningKey.load(priv).key_id == key.key_id
    assert "PRIVATE" not in repr(key)
    with pytest.raises(ConfigError, match="already exists"):
        init_keys(tmp_path / "k")


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "no public key"),
        ("rsa AAAA", "expected 'ed25519"),
        ("ed25519 not-base64!", "not a 32-byte"),
        (f"ed25519 {SigningKey.generate().public_line().split()[1]} 0000000000000000", "does not match"),
    ],
)
def test_a_bad_trusted_keys_file_fails_at_start_up_naming_the_line(text, match):
    with pytest.raises(ConfigError, match=match):
        TrustedKeys.parse(text, "trusted keys f")


def test_a_malformed_signature_in_the_header_is_a_schema_error():
    key, value = envelope().to_record()
    head_len = int.from_bytes(value[4:8], "big")
    head = value[8 : 8 + head_len].replace(b'"size"', b'"signature":{"alg":"x"},"size"')
    value = value[:4] + len(head).to_bytes(4, "big") + head + value[8 + head_len :]
    with pytest.raises(SchemaError, match="signature"):
        ModelEnvelope.from_record(key, value)
