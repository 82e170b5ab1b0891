"""The fast path of `parse_message`: one compiled msgspec pass decodes and checks a whole message.

The Structs below accept a subset of what the field-by-field checks in `messages` accept, never
more: whatever they refuse (or a post-check here refuses) goes through the slow path, which
either accepts it after all or names the key and the reason. So validation is exactly as strict
as the slow path and its error messages are unchanged; the common, valid message costs one pass.
Unknown keys are refused here too: orjson refuses a whole document for a number it cannot hold
anywhere in it, which msgspec would skip unread in an unknown key; and a key added to the
dataclasses but not here takes the slow path rather than being dropped. A unit test compares
both paths on mutated messages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from math import copysign, isfinite
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson
from msgspec import Meta

from edgemnist.prep import CANVAS, SHAPE

__all__ = ["WireImage", "WireMetrics", "fast_decode", "fast_parse", "image_epoch", "prepared_bytes"]

# Bounds repeated from messages.py (imported there, not here, to avoid a cycle); a test checks they agree.
_MAX_INT = 2**53 - 1
_MAX_WINDOW_IMAGES = 10**9
_MAX_CAMERAS = 100
_MAX_MESSAGE_BYTES = 1_000_000
_MIN_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)

_Int = Annotated[int, Meta(ge=-_MAX_INT, le=_MAX_INT)]
_Count = Annotated[int, Meta(ge=0, le=_MAX_INT)]
_Str = Annotated[str, Meta(max_length=256)]
_Stamp = Annotated[str, Meta(max_length=64)]
_Prob = Annotated[float, Meta(ge=0, le=1)]
_Seconds = Annotated[float, Meta(ge=0)]
_Digit = Annotated[int, Meta(ge=0, le=9)]
_Schema = Annotated[int, Meta(ge=1, le=2**31 - 1)]
_Slots = Annotated[
    list[Annotated[int, Meta(ge=0, le=_MAX_WINDOW_IMAGES)]], Meta(min_length=11, max_length=11)
]
# orjson reads integers inside the 64-bit range exactly and larger ones as floats; keep to where both agree
_Source = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | float | str | None


class WireImage(msgspec.Struct, forbid_unknown_fields=True, dict=True):
    """An uncertain image; `prepared_image` stays JSON text until `_check_image` reads its 784 pixels.

    Once checked, the pixels are `prepared_bytes(m)` and the timestamp's POSIX seconds
    `image_epoch(m)`: set by the check (hence `dict=True`, attributes that are not fields and so
    are never read from the wire).
    """

    count: _Count
    image: Annotated[str, Meta(max_length=_MAX_MESSAGE_BYTES)]
    camera: _Str
    timestamp: _Stamp
    prepared_image: msgspec.Raw
    prep_time: _Seconds
    predictions: Annotated[tuple[float, ...], Meta(min_length=10, max_length=10)]
    result_class: _Digit
    result_probability: _Prob
    predict_time: _Seconds
    id: _Str | None = None
    schema: _Schema | None = None
    model_version: _Str | None = None
    true_class: _Digit | None = None
    shadow_version: Annotated[str, Meta(max_length=300)] | None = None
    shadow_predicted: _Digit | None = None
    shadow_scores: Annotated[tuple[float, ...], Meta(min_length=10, max_length=10)] | None = None


class _Counts(msgspec.Struct, forbid_unknown_fields=True):
    certain: _Slots
    uncertain: _Slots


class _Latency(msgspec.Struct, forbid_unknown_fields=True):
    min: float
    max: float
    mean: float
    std: float
    percentiles: Annotated[tuple[float, ...], Meta(min_length=4, max_length=4)]


class _LatencyMetrics(msgspec.Struct, forbid_unknown_fields=True):
    prep: _Latency
    predict: _Latency


class _Config(msgspec.Struct, forbid_unknown_fields=True):
    delay: _Seconds
    repeat: _Count
    confidence: _Prob
    classify_parallel: Annotated[int, Meta(ge=1, le=_MAX_INT)]
    metrics_duration: _Seconds
    source: _Source = 0


class _Outbox(msgspec.Struct, forbid_unknown_fields=True):
    pending: _Count
    dropped: _Count


class _Results(msgspec.Struct, forbid_unknown_fields=True):
    acked: _Count
    failed: _Count
    pending: _Count


class _Refusal(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, Meta(max_length=300)]
    reason: Annotated[str, Meta(max_length=2000)]


class _Shadow(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[str, Meta(max_length=300)]
    images: _Count
    agree: _Count
    correct: _Count | None = None
    held_back: _Count | None = None


class WireMetrics(msgspec.Struct, forbid_unknown_fields=True):
    camera_metrics: Annotated[dict[_Str, _Counts], Meta(min_length=1, max_length=_MAX_CAMERAS)]
    timestamp: _Stamp
    config: _Config
    latency_metrics: _LatencyMetrics
    id: _Str | None = None
    schema: _Schema | None = None
    model_version: _Str | None = None
    window_start: _Stamp | None = None
    window_end: _Stamp | None = None
    images: _Count | None = None
    outbox: _Outbox | None = None
    labelled: _Count | None = None
    correct: _Count | None = None
    model_refused: Annotated[list[_Refusal], Meta(max_length=100)] | None = None
    results: _Results | None = None
    held_back: Annotated[int, Meta(ge=0, le=_MAX_WINDOW_IMAGES)] | None = None
    shadow: _Shadow | None = None


_IMAGE = msgspec.json.Decoder(WireImage)
_METRICS = msgspec.json.Decoder(WireMetrics)


class _Refuse(Exception):
    """The fast path will not decide; the slow path will (and names the reason if it refuses)."""


def _text(*values: str | None) -> None:
    for v in values:
        if v is not None and "\x00" in v:
            raise _Refuse


def _stamp(v: str | None, latest: datetime) -> datetime | None:
    """The timestamp `v` as an aware datetime (None for None); _Refuse unless it is one the slow path reads
    the same way, from 2000 on and no later than `latest`."""
    if v is None:
        return None
    if "\x00" in v:
        raise _Refuse
    try:
        if v[-1:] == "Z" and v.count("Z") == 1:  # what edges send: Python reads the Z as UTC itself
            when = datetime.fromisoformat(v)
        else:
            when = datetime.fromisoformat(v.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise _Refuse from None
    if not _MIN_TIMESTAMP <= when <= latest:
        raise _Refuse
    return when


def fast_decode(data: bytes | str, latest: datetime) -> WireMetrics | WireImage | None:
    """The decoded message as a fully checked Struct, or None when the slow path must decide.

    Every check `fast_parse` makes is made here; only the dataclasses are not built, so a
    caller that stores rows (the hub) can read the Struct's fields directly.
    """
    # Which decoder: a message holding a "camera_metrics" key is a metrics window, and an image
    # cannot hold one (unknown keys are refused). Edges write that key first, so a window is known
    # by its first bytes; any other message tries the image decoder first, and only a message it
    # refuses is searched for the key, so an image never pays for the search.
    text = isinstance(data, str)
    if data.startswith(_METRICS_START_STR if text else _METRICS_START):  # type: ignore[arg-type]
        return _decode_metrics(data, latest)
    try:
        m: Any = _IMAGE.decode(data)
    except msgspec.DecodeError:
        if ('"camera_metrics"' in data) if text else (b'"camera_metrics"' in data):  # type: ignore[operator]
            return _decode_metrics(data, latest)
        return None
    try:
        _check_image(m, latest)
    except _Refuse:
        return None
    return m  # type: ignore[no-any-return]


_METRICS_START = b'{"camera_metrics"'
_METRICS_START_STR = _METRICS_START.decode()


def _decode_metrics(data: bytes | str, latest: datetime) -> WireMetrics | None:
    try:
        m = _METRICS.decode(data)
        _check_metrics(m, latest)
    except (msgspec.DecodeError, _Refuse):
        return None
    return m


def fast_parse(data: bytes | str, latest: datetime, types: Any) -> Any:
    """The message as `messages`' dataclasses, or None when the slow path must decide.

    `latest` is the newest acceptable timestamp; `types` the `messages` module (its classes).
    """
    m = fast_decode(data, latest)
    if m is None:
        return None
    return _metrics(m, types) if type(m) is WireMetrics else _image(m, types)  # type: ignore[arg-type]


def _check_image(m: WireImage, latest: datetime) -> None:
    _text(m.image, m.camera, m.id, m.model_version, m.shadow_version)
    if m.shadow_scores is not None and not all(map(isfinite, m.shadow_scores)):
        raise _Refuse
    when = _stamp(m.timestamp, latest)
    assert when is not None  # a required key: msgspec refuses a message without it
    m.pixels = _pixels(bytes(m.prepared_image))  # type: ignore[attr-defined]
    # `store.rows.epoch(m.timestamp)` would parse the timestamp again the same way (a test checks it)
    m.epoch = when.timestamp()  # type: ignore[attr-defined]


_SPACE = b" \t\n\r"  # JSON's whitespace: valid JSON has it only between tokens, never inside a number
_DIGITS_SPACE = b"0123456789" + _SPACE
_BRACKETS_SPACE = b"[]" + _SPACE
# The prepared image with its digits and whitespace taken out: 28 rows of 28 numbers
_PIXELS = CANVAS * CANVAS
_SKELETON = b"[" + b",".join([b"[" + b"," * (CANVAS - 1) + b"]"] * CANVAS) + b"]"


def _pixels(text: bytes) -> bytes:
    """The 784 pixels of a prepared image's JSON text, or _Refuse for any other form or value.

    msgspec has checked the text is well-formed JSON (so no leading zeros, no empty slots and
    whitespace only between tokens); with the digits and whitespace taken out it must be exactly
    the 28x28 skeleton, so it holds 784 plain non-negative integers. `bytearray` refuses any of
    them above 255 (and orjson one too large for 64 bits). Anything else (-0, 1.0, 1e2, true,
    other shapes) is left to the slow path. The zeros before the first and after the last
    non-zero pixel (the margins of a centred digit, about half of it) are counted, not parsed.
    """
    if text.translate(None, _DIGITS_SPACE) != _SKELETON:
        raise _Refuse
    flat = text.translate(None, _BRACKETS_SPACE)  # the 784 numbers, one comma between each two
    body = flat.lstrip(b"0,")  # a number starting with 0 is 0 (no leading zeros in JSON)
    if not body:
        return bytes(_PIXELS)
    lead = (len(flat) - len(body)) // 2  # "0," per zero
    cut = body.find(b",", len(body.rstrip(b"0,")))  # rstrip may eat the 0s of 10, 100..: to the next comma
    core, trail = (body, 0) if cut < 0 else (body[:cut], (len(body) - cut) // 2)  # ",0" per zero
    try:
        out = bytes(lead) + bytearray(orjson.loads(b"[" + core + b"]")) + bytes(trail)
    except (ValueError, TypeError):  # orjson.JSONDecodeError is a ValueError
        raise _Refuse from None
    if len(out) != _PIXELS:  # cannot happen after the skeleton check; refuse rather than store it
        raise _Refuse
    return out


def prepared_bytes(m: WireImage) -> bytes:
    """The 28x28 prepared image as 784 bytes (each value was checked to be 0..255)."""
    return m.pixels  # type: ignore[attr-defined,no-any-return]


def image_epoch(m: WireImage) -> float:
    """The checked image's timestamp as POSIX seconds, read once by the check (as `store.rows.epoch` reads it)."""
    return m.epoch  # type: ignore[attr-defined,no-any-return]


def _image(m: WireImage, t: Any) -> Any:
    pixels = prepared_bytes(m)
    return t.UncertainImage(
        m.count, m.image, m.camera, m.timestamp, np.frombuffer(pixels, dtype=np.uint8).reshape(SHAPE),
        m.prep_time, m.predictions, m.result_class, m.result_probability, m.predict_time,
        m.id, m.schema, m.model_version, m.true_class, m.shadow_version, m.shadow_predicted, m.shadow_scores,
    )  # fmt: skip


def _latency(s: _Latency, t: Any) -> Any:
    return t.LatencyStats(s.min, s.max, s.mean, s.std, s.percentiles)


_CONFIGS: dict[tuple[Any, ...], Any] = {}


def _config(c: _Config, t: Any) -> Any:
    """An edge sends the same configuration in every window: share one (immutable) EdgeConfig."""
    src = c.source
    # -0.0 == 0.0 and 1 == 1.0 as keys, yet they print differently: the key keeps signs and types
    signs = (copysign(1, c.delay), copysign(1, c.confidence), copysign(1, c.metrics_duration))
    key = (c.delay, c.repeat, type(src), src, c.confidence, c.classify_parallel, c.metrics_duration, signs,
           copysign(1, src) if type(src) is float else 0)  # fmt: skip
    got = _CONFIGS.get(key)
    if got is None:
        if len(_CONFIGS) >= 1024:
            _CONFIGS.clear()
        got = _CONFIGS[key] = t.EdgeConfig(
            c.delay, c.repeat, src, c.confidence, c.classify_parallel, c.metrics_duration
        )
    return got


def _check_metrics(m: WireMetrics, latest: datetime) -> None:
    total = 0
    for cam, c in m.camera_metrics.items():
        if "\x00" in cam:
            raise _Refuse
        total += sum(c.certain) + sum(c.uncertain)
    if total > _MAX_WINDOW_IMAGES:
        raise _Refuse
    if m.correct is not None and m.labelled is not None and m.correct > m.labelled:
        raise _Refuse
    if m.labelled is not None and m.labelled > (total if m.images is None else min(m.images, total)):
        raise _Refuse
    _text(m.id, m.model_version)
    _stamp(m.timestamp, latest)
    _stamp(m.window_start, latest)
    _stamp(m.window_end, latest)
    if m.model_refused is not None:
        _text(*(r.version for r in m.model_refused), *(r.reason for r in m.model_refused))
    sh = m.shadow
    if sh is not None and (sh.agree > sh.images or (sh.correct is not None and sh.correct > sh.images)):
        raise _Refuse
    if sh is not None:
        _text(sh.version)


def _metrics(m: WireMetrics, t: Any) -> Any:
    counts = {cam: t.CameraCounts(c.certain, c.uncertain) for cam, c in m.camera_metrics.items()}
    refused = None
    if m.model_refused is not None:
        refused = tuple(t.ModelRefusal(r.version, r.reason) for r in m.model_refused)
    return t.MetricsMessage(
        counts,
        m.timestamp,
        _config(m.config, t),
        _latency(m.latency_metrics.prep, t),
        _latency(m.latency_metrics.predict, t),
        m.id, m.schema, m.model_version, m.window_start, m.window_end, m.images,
        None if m.outbox is None else t.OutboxStats(m.outbox.pending, m.outbox.dropped),
        m.labelled, m.correct, refused,
        None if m.results is None else t.ResultStats(m.results.acked, m.results.failed, m.results.pending),
        m.held_back,
        None if m.shadow is None else t.ShadowStats(
            m.shadow.version, m.shadow.images, m.shadow.agree, m.shadow.correct, m.shadow.held_back or 0
        ),
    )  # fmt: skip
