"""The compiled decode-and-validate pass accepts only what the key-by-key checks accept, with equal results."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemnist.errors import SchemaError
from edgemnist.wire import fast as _wire
from edgemnist.wire import messages
from metro_app.samples import make_image, make_metrics
from tests.poison import poison_image, poison_metrics
from tests.wirecases import PREPARED, with_prepared


def both(data: bytes):
    """(fast result or None, slow result or the SchemaError it raised)."""
    fast = _wire.fast_parse(data, datetime.now(UTC) + messages.FUTURE_TOLERANCE, messages)
    try:
        slow = messages._parse_slow(data, messages.Origin("events", 0, 1))
    except SchemaError as exc:
        slow = exc
    return fast, slow


def test_bounds_agree_with_messages():
    assert _wire._MAX_INT == messages.MAX_INT and _wire._MAX_WINDOW_IMAGES == messages.MAX_WINDOW_IMAGES
    assert _wire._MAX_CAMERAS == messages.MAX_CAMERAS_PER_MESSAGE
    assert _wire._MAX_MESSAGE_BYTES == messages.MAX_MESSAGE_BYTES
    assert _wire._MIN_TIMESTAMP == messages.MIN_TIMESTAMP


@pytest.mark.parametrize("msg", [make_image("Cam", 3), make_metrics("Cam", 4, correct=15),
                                 make_image("Cam", 5, with_id=False), make_metrics("Cam", 6, with_id=False)])  # fmt: skip
def test_valid_messages_take_the_fast_pass_and_equal_the_slow_result(msg):
    for data in (msg.to_json(), json.dumps(msg.to_dict()).encode()):  # compact, or with json.dumps' spaces
        fast, slow = both(data)
        assert fast is not None and type(fast) is type(slow)
        assert fast.to_dict() == slow.to_dict() == msg.to_dict()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 1).flatmap(lambda k: (poison_image if k else poison_metrics)(7)))
def test_the_fast_pass_never_accepts_what_the_checks_refuse(message):
    fast, slow = both(json.dumps(message).encode())
    if fast is not None:
        assert not isinstance(slow, SchemaError), (message, slow)
        assert type(fast) is type(slow) and fast.to_dict() == slow.to_dict()


@pytest.mark.parametrize(
    "change",
    [
        {"count": True}, {"count": 1.0}, {"count": 2**63}, {"result_probability": 1}, {"schema": None},
        {"camera_metrics": None}, {"source_bigint": 2**64}, {"timestamp": "2020-06-01T12:00:00"},
        {"timestamp": "2020-06-01T12:00:00+02:00"}, {"prep_time": 10**400}, {"later_key": 10**400},
    ],
)  # fmt: skip
def test_edge_values_agree(change):
    for d in (make_image("Cam", 1).to_dict(), make_metrics("Cam", 1).to_dict()):
        if "source_bigint" in change:
            d.setdefault("config", {})["source"] = change["source_bigint"]
        else:
            d.update(change)
        fast, slow = both(json.dumps(d).encode())
        if fast is not None:
            assert not isinstance(slow, SchemaError) and fast.to_dict() == slow.to_dict(), (change, slow)


def test_shared_edge_configs_keep_signs_and_types():
    seen = []
    for delay, source in ((0.0, 0), (-0.0, 0), (0.0, 0.0), (0.0, -0.0), (0.0, False), (0.0, 0)):
        d = make_metrics("Cam", 1).to_dict()
        d["config"].update(delay=delay, source=source)
        fast, slow = both(json.dumps(d).encode())
        assert isinstance(slow, SchemaError) or fast is None or fast.to_dict() == slow.to_dict()
        if fast is not None:
            seen.append(json.dumps(fast.to_dict()["config"]))
    assert len(set(seen)) == 4, seen  # 0/0, -0.0/0, 0.0/0.0, 0.0/-0.0; False takes the slow path


def _with_shadow():
    import dataclasses

    image = dataclasses.replace(
        make_image("Cam", 8), shadow_version="m-2", shadow_predicted=7, shadow_scores=(0.0,) * 7 + (1.0, 0, 0)
    )
    window = dataclasses.replace(
        make_metrics("Cam", 9, correct=15),
        shadow=messages.ShadowStats("m-2", images=250, agree=240, correct=200, held_back=3),
    )
    return image, window


def test_the_shadow_keys_take_the_fast_pass_and_round_trip():
    for msg in _with_shadow():
        fast, slow = both(msg.to_json())
        assert fast is not None and type(fast) is type(slow)
        assert fast.to_dict() == slow.to_dict() == msg.to_dict()
    image, window = _with_shadow()
    back = messages.parse_message(image.to_json())
    assert (back.shadow_version, back.shadow_predicted, back.shadow_scores[7]) == ("m-2", 7, 1.0)
    shadow = messages.parse_message(window.to_json()).shadow
    assert shadow == messages.ShadowStats("m-2", 250, 240, 200, 3)
    assert window.to_dict()["shadow"] == {
        "version": "m-2",
        "images": 250,
        "agree": 240,
        "correct": 200,
        "held_back": 3,
    }


@pytest.mark.parametrize(
    "change",
    [{"agree": 251}, {"correct": 251}, {"images": -1}, {"version": 7}, {"version": "a\x00b"}, {"extra": 1}],
)
def test_impossible_shadow_figures_are_refused_by_both_passes_or_agree(change):
    _, window = _with_shadow()
    d = window.to_dict()
    d["shadow"].update(change)
    fast, slow = both(json.dumps(d).encode())
    if "extra" in change:  # an unknown key: the fast pass hands over, the checks accept it
        assert fast is None and not isinstance(slow, SchemaError)
    else:
        assert fast is None and isinstance(slow, SchemaError)
        assert f"key {next(iter(change))!r}" in str(slow)


# the prepared image: read from its JSON text, never more leniently than the key-by-key check -------------


@pytest.mark.parametrize("name", sorted(PREPARED))
def test_every_form_of_the_prepared_image_is_decided_as_the_key_by_key_check_decides(name):
    fast, slow = both(with_prepared(PREPARED[name]))
    if isinstance(slow, SchemaError):
        assert fast is None, (name, slow)
    else:
        assert fast is None or fast.to_dict() == slow.to_dict(), name
        assert slow.prepared_image.tobytes() == bytes(sum(json.loads(PREPARED[name]), []))
    if name in (
        "as sent",
        "255",
        "spaces",
        "a newline",
        "json.dumps",
        "every whitespace",
    ):  # what edges and json.dumps write take the fast pass
        assert fast is not None and fast.prepared_image.tobytes() == slow.prepared_image.tobytes()
    if name in ("256", "-1", "1.0", "true", "27 rows", "29 columns", "2**64", "a nested list"):
        assert "key 'prepared_image'" in str(slow), (name, slow)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 29),
            st.integers(0, 29),
            st.sampled_from([0, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255, 256, 299, 999, 1000, -1, 2**63,
                             10**30, 0.0, 1.0, 255.0, 1e2, True, False, None, "1", [], [0]]),
        ),
        max_size=4,
    ),
    st.sampled_from(["", " ", "\n", "\t"]),
    st.integers(0, 3000),
    st.sampled_from(["as sent", "all zeros", "all 255", "only the first pixel", "only the last pixel, 10"]),
)  # fmt: skip
def test_any_prepared_image_is_decided_as_the_key_by_key_check_decides(changes, space, at, base):
    rows = json.loads(PREPARED[base])
    for r, c, value in changes:
        if r < len(rows):
            row = rows[r]
            row[c:c + 1] = [value] if c < 28 else [value, 0] if c == 28 else []  # fmt: skip
        elif r == 28:
            rows.append([0] * 28)
        else:
            rows.pop()
    text = json.dumps(rows, separators=(",", ":"))
    if space and at < len(text) and text[at] in ",[]":
        text = text[: at + 1] + space + text[at + 1 :]
    fast, slow = both(with_prepared(text))
    if isinstance(slow, SchemaError):
        assert fast is None, (text, slow)
    elif fast is not None:
        assert fast.to_dict() == slow.to_dict()
        assert fast.prepared_image.tobytes() == slow.prepared_image.tobytes()


def _latest():
    return datetime.now(UTC) + messages.FUTURE_TOLERANCE


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (make_image("Cam", 1).to_json(), _wire.WireImage),
        (json.dumps(make_image("Cam", 2).to_dict()).encode(), _wire.WireImage),
        (json.dumps({**make_image("Cam", 3).to_dict(), "camera": "camera_metrics"}).encode(), _wire.WireImage),
        (make_metrics("Cam", 4).to_json(), _wire.WireMetrics),
        (make_metrics("Cam", 4).to_json().decode(), _wire.WireMetrics),
        (json.dumps({"timestamp": make_metrics("Cam", 5).timestamp, **make_metrics("Cam", 5).to_dict()}).encode(),
         _wire.WireMetrics),
        (b" " + make_metrics("Cam", 6).to_json(), _wire.WireMetrics),
    ],
)  # fmt: skip
def test_each_kind_of_valid_message_takes_the_compiled_pass(data, kind):
    """A window known by its first key, one whose key comes later, an image whatever its values say."""
    m = _wire.fast_decode(data, _latest())
    assert type(m) is kind
    if kind is _wire.WireImage:
        from metro_app.store.rows import epoch

        assert _wire.image_epoch(m) == epoch(m.timestamp)
        assert len(_wire.prepared_bytes(m)) == 784
