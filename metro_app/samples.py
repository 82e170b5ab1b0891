"""Well-formed and malformed wire messages, for the hub's tests and benchmark.

Good messages are built with `edgemnist.wire.messages`, so they are exactly what an
edge sends; each malformed kind is one way real input goes wrong.
"""

from __future__ import annotations

import base64
import functools
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from edgemnist.prep import SHAPE
from edgemnist.wire.messages import (
    LABEL_SLOTS,
    CameraCounts,
    EdgeConfig,
    LatencyStats,
    MetricsMessage,
    OutboxStats,
    UncertainImage,
    utc_timestamp,
)

__all__ = ["png_frame", "make_image", "make_metrics", "MALFORMED", "malformed"]


@functools.cache
def png_frame(digit: int = 7) -> bytes:
    """A 28x28 RGB camera frame (dark ink on light paper), as PNG bytes."""
    a = np.full(SHAPE, 255, np.uint8)
    a[6:22, 8 + digit % 4 : 12 + digit % 4] = 0
    buf = io.BytesIO()
    Image.fromarray(a).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def make_image(
    camera: str, n: int, *, run: str = "r1", with_id: bool = True, when: float | None = None
) -> UncertainImage:
    """The n-th uncertain image of a camera; its id is `<camera>/<run>/i<n>`."""
    prepared = np.zeros(SHAPE, np.uint8)
    prepared[6:22, 12:16] = 255
    preds = np.full(10, 0.05)
    preds[n % 10] = 0.55
    return UncertainImage(
        count=n,
        image=base64.b64encode(png_frame(n % 10)).decode("ascii"),
        camera=camera,
        timestamp=utc_timestamp(when),
        prepared_image=prepared,
        prep_time=0.002,
        predictions=tuple(float(x) for x in preds),
        result_class=n % 10,
        result_probability=0.55,
        predict_time=0.0004,
        id=f"{camera}/{run}/i{n}" if with_id else None,
        model_version="m-test",
        true_class=(n + n // 7) % 10,
    )


def make_metrics(
    camera: str,
    n: int,
    *,
    images: int = 20,
    run: str = "r1",
    with_id: bool = True,
    when: float | None = None,
    correct: int | None = None,
) -> MetricsMessage:
    """The n-th metrics window of a camera with `images` scored images; id `<camera>/<run>/m<n>`.

    With `correct`, every image is labelled and that many were scored right (live accuracy).
    """
    certain = [0] * LABEL_SLOTS
    uncertain = [0] * LABEL_SLOTS
    for i in range(images):
        (uncertain if i % 4 == 0 else certain)[i % 10] += 1
    return MetricsMessage(
        camera_metrics={camera: CameraCounts(tuple(certain), tuple(uncertain))},
        timestamp=utc_timestamp(when),
        config=EdgeConfig(metrics_duration=2),
        prep=LatencyStats.of([0.001, 0.002, 0.003]),
        predict=LatencyStats.of([0.0002, 0.0004]),
        id=f"{camera}/{run}/m{n}" if with_id else None,
        model_version="m-test",
        images=images,
        outbox=OutboxStats(pending=n % 3, dropped=0),
        labelled=None if correct is None else images,
        correct=correct,
    )


def _mutate(
    fn: Callable[[dict[str, Any]], None], base: Callable[[int], dict[str, Any]]
) -> Callable[[int], bytes]:
    def build(i: int) -> bytes:
        d = base(i)
        fn(d)
        return json.dumps(d).encode()

    return build


def _img(i: int) -> dict[str, Any]:
    return make_image("Bad", i, run="bad").to_dict()


def _met(i: int) -> dict[str, Any]:
    return make_metrics("Bad", i, run="bad").to_dict()


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.__setitem__(key, value)


def _truncated_png(d: dict[str, Any]) -> None:
    d["image"] = base64.b64encode(png_frame(1)[:40]).decode()


# kind -> builder of the i-th malformed value (bytes, or None for a tombstone)
MALFORMED: dict[str, Callable[[int], bytes | None]] = {
    "not-json": lambda i: b"\x00\xffnot json %d {" % i,
    "json-array": lambda i: b"[1, 2, %d]" % i,
    "unknown-kind": lambda i: json.dumps({"hello": i}).encode(),
    "wrong-type": _mutate(_set("result_class", "seven"), _img),
    "missing-key": _mutate(lambda d: d.pop("predictions"), _img),
    "bad-counts": _mutate(lambda d: d["camera_metrics"]["Bad"].__setitem__("certain", [1, 2]), _met),
    "bad-base64": _mutate(_set("image", "@@@not base64@@@"), _img),
    "not-png": _mutate(_set("image", base64.b64encode(b"GIF89a plain gif bytes").decode()), _img),
    "truncated-png": _mutate(_truncated_png, _img),
    "oversized": lambda i: b'{"image": "' + b"A" * 1_020_000 + b'"}',
    "tombstone": lambda i: None,
}


def malformed(i: int, kinds: list[str] | None = None) -> tuple[str, bytes | None]:
    """The i-th malformed message, cycling through the kinds; returns (kind, value)."""
    names = kinds or list(MALFORMED)
    kind = names[i % len(names)]
    return kind, MALFORMED[kind](i)
