"""Wire formats for scoring on request: per-image results, prediction requests and responses.

Three systems next to ours expect these: a results topic with one compact
record per scored image, and a request/response pair of topics where a client
asks the hub to score an image with a named model. Parsing and validation of
these messages live only here, beside `edgemnist.wire.messages` (events) and
`edgemnist.wire.envelope` (models).

A request names its image either as a camera frame (``image``: base64 PNG,
prepared exactly as at the edge) or as the model input itself (``pixels``:
784 ints 0..255, a 28x28 digit with ink high on a zero background, as MNIST
stores it and as ``prepared_image`` carries it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from edgemnist.errors import SchemaError
from edgemnist.png import check_png
from edgemnist.prep import PIXELS, SHAPE
from edgemnist.wire.messages import Origin

__all__ = [
    "LATEST",
    "MAX_REQUEST_BYTES",
    "ImageResult",
    "PredictRequest",
    "PredictResponse",
    "RequestError",
    "parse_request",
]

LATEST = "latest"
MAX_REQUEST_BYTES = 1_000_000
_ID_LIMIT = 256
_MODEL_LIMIT = 300


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One scored image on the results topic: small enough to send for every image."""

    id: str
    camera: str
    count: int
    timestamp: str
    result_class: int
    result_probability: float
    model_version: str | None = None
    true_class: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "camera": self.camera,
            "count": self.count,
            "timestamp": self.timestamp,
            "result_class": self.result_class,
            "result_probability": self.result_probability,
        }
        if self.model_version is not None:
            d["model_version"] = self.model_version
        if self.true_class is not None:
            d["true_class"] = self.true_class
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


class RequestError(SchemaError):
    """A prediction request that cannot be answered with scores; `request_id` when it was readable."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True, slots=True, eq=False)
class PredictRequest:
    """A request to score one image with a named model ("latest" or a version)."""

    id: str
    model: str
    png: bytes | None = None  # a camera frame, prepared as at the edge
    pixels: np.ndarray | None = None  # (28, 28) uint8 model input

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "model": self.model}
        if self.png is not None:
            d["image"] = base64.b64encode(self.png).decode("ascii")
        if self.pixels is not None:
            d["pixels"] = self.pixels.ravel().tolist()
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


@dataclass(frozen=True, slots=True)
class PredictResponse:
    """The answer to one request: the ten scores, or an error saying why there are none."""

    id: str | None
    model_version: str | None = None
    predictions: tuple[float, ...] | None = None
    error: str | None = None

    @property
    def result_class(self) -> int | None:
        return None if self.predictions is None else int(np.argmax(self.predictions))

    @property
    def result_probability(self) -> float | None:
        return None if self.predictions is None else float(max(self.predictions))

    @classmethod
    def failed(cls, request_id: str | None, error: str) -> PredictResponse:
        return cls(request_id, error=error)

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None or self.predictions is None:
            return {"id": self.id, "error": self.error or "no prediction"}
        return {
            "id": self.id,
            "model_version": self.model_version,
            "predictions": list(self.predictions),
            "result_class": self.result_class,
            "result_probability": self.result_probability,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> PredictResponse:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"prediction response: not JSON ({exc})") from exc
        if not isinstance(obj, Mapping):
            raise SchemaError("prediction response: not a JSON object")
        preds = obj.get("predictions")
        return cls(
            obj.get("id"),
            obj.get("model_version"),
            None if preds is None else tuple(float(p) for p in preds),
            obj.get("error"),
        )


def _pixels(v: Any, where: str, rid: str) -> np.ndarray:
    if not isinstance(v, Sequence) or isinstance(v, str) or len(v) != PIXELS:
        n = len(v) if isinstance(v, Sequence) else type(v).__name__
        raise RequestError(f"{where}: 'pixels' must be {PIXELS} integers 0..255, got {n}", rid)
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in v):
        raise RequestError(f"{where}: 'pixels' must hold only integers", rid)
    try:
        raw = bytes(v)
    except ValueError as exc:
        raise RequestError(f"{where}: 'pixels' must hold integers 0..255", rid) from exc
    return np.frombuffer(raw, dtype=np.uint8).reshape(SHAPE)


def _png(v: Any, where: str, rid: str) -> bytes:
    if not isinstance(v, str):
        raise RequestError(f"{where}: 'image' must be a base64 string", rid)
    try:
        png = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"{where}: 'image' is not valid base64", rid) from exc
    try:
        check_png(png, f"{where}: malformed image: 'image'")
    except SchemaError as exc:
        raise RequestError(str(exc), rid) from exc
    return png


def parse_request(
    data: bytes | str | None, origin: Origin | None = None, key: bytes | None = None
) -> PredictRequest:
    """Decode and validate one request; RequestError names where it came from and carries its id if readable.

    A request without a readable id is answered under its Kafka key, so the client can still match it.
    """
    where = str(origin or Origin())
    fallback = key.decode("utf-8", "replace")[:_ID_LIMIT] if key else None
    if data is None:
        raise RequestError(f"{where}: empty value (tombstone)", fallback)
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestError(f"{where}: {len(data)} bytes, more than the {MAX_REQUEST_BYTES} allowed", fallback)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"{where}: not JSON ({exc})", fallback) from exc
    if not isinstance(obj, dict):
        raise RequestError(f"{where}: JSON {type(obj).__name__}, expected an object", fallback)
    rid = obj.get("id")
    if not isinstance(rid, str) or not rid or len(rid) > _ID_LIMIT:
        raise RequestError(f"{where}: 'id' must be a string of 1 to {_ID_LIMIT} characters", fallback)
    model = obj.get("model", LATEST)
    if not isinstance(model, str) or not model or len(model) > _MODEL_LIMIT:
        raise RequestError(f"{where}: 'model' must be 'latest' or a model version", rid)
    has_image, has_pixels = obj.get("image") is not None, obj.get("pixels") is not None
    if has_image == has_pixels:
        raise RequestError(
            f"{where}: give exactly one of 'image' (base64 PNG) or 'pixels' ({PIXELS} ints)", rid
        )
    if has_image:
        return PredictRequest(rid, model, png=_png(obj["image"], where, rid))
    return PredictRequest(rid, model, pixels=_pixels(obj["pixels"], where, rid))
