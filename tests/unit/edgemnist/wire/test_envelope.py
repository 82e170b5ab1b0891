import hashlib

import orjson
import pytest

from edgemnist.errors import SchemaError
from edgemnist.wire.envelope import MODEL_MAGIC, ModelEnvelope


def _env(**kw) -> ModelEnvelope:
    data = kw.pop("data", b"PK\x03\x04 model bytes")
    return ModelEnvelope("m-2", hashlib.sha256(data).hexdigest(), data, parent="m-1", **kw)


def test_envelope_round_trip_keeps_every_field_and_the_bytes():
    env = _env(created="2026-11-25T12:00:00.000000Z", targets=("CamB", "CamA"))
    key, value = env.to_record()
    back = ModelEnvelope.from_record(key, value)
    assert key == b"CamA,CamB"
    assert back.header() == env.header() and back.data == env.data


def test_fleet_model_is_keyed_star_and_applies_to_every_camera():
    env = _env()
    assert env.key == b"*" and env.applies_to("anything-host")


@pytest.mark.parametrize(
    "value, needle",
    [
        (None, "tombstone"),
        (b"{}", "magic"),
        (MODEL_MAGIC + b"\xff\xff\xff\xff", "header length"),
        (MODEL_MAGIC + b"\x00\x00\x00\x02[]", "object"),
        (MODEL_MAGIC + b"\x00\x00\x00\x02no", "not JSON"),
    ],
)
def test_malformed_envelopes_name_the_problem(value, needle):
    with pytest.raises(SchemaError, match=needle):
        ModelEnvelope.from_record(b"*", value, "models[0]@7")


def test_size_and_hash_shape_are_checked():
    key, value = _env().to_record()
    with pytest.raises(SchemaError, match="model bytes"):
        ModelEnvelope.from_record(key, value + b"extra")
    bad = ModelEnvelope("m-2", "XYZ", b"x").to_record()
    with pytest.raises(SchemaError, match="sha256"):
        ModelEnvelope.from_record(*bad)


@pytest.mark.parametrize("seq", [-1, 2**53, True, "7", 1.5])
def test_a_publication_number_must_be_a_plain_integer(seq):
    env = ModelEnvelope("m-2", "ab" * 32, b"PK", seq=seq)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="'seq'"):
        ModelEnvelope.from_record(*env.to_record())


def test_the_publication_number_survives_the_wire():
    env = ModelEnvelope("m-2", "ab" * 32, b"PK", seq=42)
    assert ModelEnvelope.from_record(*env.to_record()).seq == 42
    assert "seq" not in ModelEnvelope("m-2", "ab" * 32, b"PK").header()  # older records read as before


def test_a_shadow_envelope_round_trips_its_role_under_its_own_key():
    env = _env(targets=("Line3",), role="shadow")
    key, value = env.to_record()
    back = ModelEnvelope.from_record(key, value)
    assert key == b"shadow:Line3"
    assert back.role == "shadow" and back.header()["role"] == "shadow"
    assert back.data == env.data and back.targets == ("Line3",)
    assert _env(role="shadow").key == b"shadow:*"


def test_an_envelope_without_a_role_serves_and_its_record_is_unchanged():
    env = _env(targets=("Line3",))
    key, value = env.to_record()
    assert b'"role"' not in value  # the bytes of a serving record are those of a record before roles
    assert key == b"Line3"
    assert ModelEnvelope.from_record(key, value).role == "serve"
    head = orjson.loads(value[8 : 8 + int.from_bytes(value[4:8], "big")])
    head["role"] = "serve"
    raw = orjson.dumps(head)
    explicit = MODEL_MAGIC + len(raw).to_bytes(4, "big") + raw + env.data
    assert ModelEnvelope.from_record(key, explicit).role == "serve"


def test_an_unknown_role_is_refused_by_name():
    env = _env()
    head = {**env.header(), "role": "boss"}
    raw = orjson.dumps(head)
    with pytest.raises(SchemaError, match="role"):
        ModelEnvelope.from_record(b"*", MODEL_MAGIC + len(raw).to_bytes(4, "big") + raw + env.data)
