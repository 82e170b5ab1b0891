"""MNIST normalisation of camera frames (docs/reference.md "Preparation"), a micro-batch at a time.

The reference prepares one image at a time with PIL. Here only PNG decoding
stays per image; greyscale conversion, bounding boxes, the Lanczos resize,
centres of mass and pasting run vectorised over the whole batch. The resize
reproduces Pillow's 8-bit fixed-point Lanczos exactly (same weights, same
rounding), using float64 matrix products whose integer results are exact, so
the output equals the per-image PIL algorithm that the unit tests keep as the
oracle.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from edgemnist import png

__all__ = ["CANVAS", "PIXELS", "SHAPE", "SIDE", "Prepared", "prepare_batch", "prepare_frames"]

log = logging.getLogger(__name__)

SIDE = 20  # the digit is scaled to fit a SIDE x SIDE box, as MNIST did
CANVAS = 28  # ... and centred on a CANVAS x CANVAS image, the model input
SHAPE = (CANVAS, CANVAS)  # one prepared image
PIXELS = CANVAS * CANVAS  # one prepared image flattened, as the model and the wire count it
_PRECISION = 22  # Pillow's PRECISION_BITS for 8-bit resampling
_HALF = float(1 << (_PRECISION - 1))
_SCALE = 1.0 / (1 << _PRECISION)
_FAST_MODES = {0: ("L", "L"), 2: ("RGBX", "RGB"), 6: ("RGBA", "RGBA")}  # colour type -> mode, rawmode
_FAST_MAX_SIDE = 4096
_CROP_BUDGET = 1 << 21  # pixels of square crops resized in one go
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError, zlib.error, struct.error)


@dataclass(frozen=True, slots=True, eq=False)
class Prepared:
    """Prepared images plus which input frame each came from, and why the others were dropped.

    Attributes:
        images: (M, 28, 28) uint8, background 0, ink high: the model input.
        index: (M,) position in the input batch of each prepared image.
        errors: (position, reason) of every frame that could not be decoded.
    """

    images: np.ndarray
    index: np.ndarray
    errors: tuple[tuple[int, str], ...]


class _Decoder:
    """Decode frames to greyscale arrays, taking a fast path for plain 8-bit PNGs.

    ``Image.open`` spends most of its time parsing chunks in Python. For the
    common case (8-bit grey, RGB or RGBA, not interlaced) we check the chunk
    CRCs ourselves and hand the IDAT stream to Pillow's own PNG decoder,
    which writes into an image whose memory is a NumPy buffer (no copy out).
    Anything else goes through ``Image.open(...).convert("L")``.
    """

    def __init__(self) -> None:
        self._shared: dict[tuple[str, int, int], tuple[np.ndarray, Image.Image]] = {}

    def __call__(self, frame: bytes) -> tuple[str, np.ndarray]:
        """Return ("L", (h, w)) greyscale or ("RGB", (h, w, 4)) pixels still to be converted."""
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise TypeError(f"frame is {type(frame).__name__}, not bytes")
        frame = bytes(frame)
        parsed = _parse_png(frame)
        if parsed is None:
            with Image.open(io.BytesIO(frame)) as opened:
                return "L", np.asarray(opened.convert("L"))
        width, height, colour, idat = parsed
        mode, rawmode = _FAST_MODES[colour]
        buf, image = self._image(mode, width, height)
        image.frombytes(idat, "zip", rawmode)
        pixels = buf.copy() if image.readonly else np.array(image)  # Pillow copied on write: still right
        return ("L" if mode == "L" else "RGB"), pixels

    def _image(self, mode: str, width: int, height: int) -> tuple[np.ndarray, Image.Image]:
        key = (mode, width, height)
        if key not in self._shared:
            shape = (height, width) if mode == "L" else (height, width, 4)
            buf = np.zeros(shape, dtype=np.uint8)
            self._shared[key] = (buf, Image.frombuffer(mode, (width, height), buf, "raw", mode, 0, 1))
        return self._shared[key]


def _parse_png(frame: bytes) -> tuple[int, int, int, bytes] | None:
    """(width, height, colour type, IDAT data) of a plain PNG; None when the slow path must decode it."""
    if not frame.startswith(png.SIGNATURE):
        return None
    header, idat = None, []
    try:
        for kind, body in png.chunks(frame):
            if kind == b"IHDR":
                header = png.Header.unpack(body)
            elif kind == b"IDAT":
                idat.append(body)
    except png.ChunkError as exc:
        if exc.problem == "crc":
            raise ValueError(f"broken PNG ({exc.kind!r} chunk CRC mismatch)") from exc
        raise ValueError("truncated PNG") from exc
    if header is None or not idat:
        raise ValueError("PNG without IHDR or IDAT")
    width, height, depth, colour, _, _, interlace = header
    if (
        depth != 8
        or interlace
        or colour not in _FAST_MODES
        or not 0 < min(width, height) <= max(width, height) <= _FAST_MAX_SIDE
    ):
        return None
    return width, height, colour, b"".join(idat)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _to_ink(kind: str, stack: np.ndarray) -> np.ndarray:
    """Greyscale as Pillow's convert("L") computes it, then inverted: background 0, ink high."""
    if kind == "L":
        return 255 - stack
    rgbx = stack.view("<u4")[..., 0]
    grey = (
        (rgbx & 0xFF) * 19595 + ((rgbx >> 8) & 0xFF) * 38470 + ((rgbx >> 16) & 0xFF) * 7471 + 0x8000
    ) >> 16
    return (255 - grey).astype(np.uint8)


@lru_cache(maxsize=512)
def _lanczos_weights(size: int) -> np.ndarray:
    """(20, size) integer weights, exactly Pillow's ``precompute_coeffs`` + 8-bit normalisation."""
    scale = size / SIDE
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    weights = np.zeros((SIDE, size))
    for out in range(SIDE):
        center = (out + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), size)
        taps = [_lanczos((x - center + 0.5) / filterscale) for x in range(lo, hi)]
        total = 0.0
        for tap in taps:
            total += tap
        for x, tap in enumerate(taps):
            norm = tap / total if total != 0.0 else tap
            weights[out, lo + x] = int(norm * (1 << _PRECISION) + (-0.5 if norm < 0 else 0.5))
    weights.flags.writeable = False
    return weights


def _lanczos(x: float) -> float:
    if not -3.0 <= x < 3.0:
        return 0.0
    return _sinc(x) * _sinc(x / 3.0)


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _clip8(acc: np.ndarray) -> np.ndarray:
    return np.clip(np.floor((acc + _HALF) * _SCALE), 0.0, 255.0)


def _resize(crops: np.ndarray) -> np.ndarray:
    """Lanczos-resize (n, s, s) crops to (n, 20, 20): horizontal pass, round, vertical pass, round."""
    n, size = crops.shape[0], crops.shape[1]
    if size == SIDE:
        return crops.astype(np.float64)
    weights = _lanczos_weights(size)
    rows = _clip8(crops.reshape(n * size, size).astype(np.float64) @ weights.T)  # (n*s, 20)
    cols = rows.reshape(n, size, SIDE).transpose(0, 2, 1).reshape(n * SIDE, size)
    return _clip8(cols @ weights.T).reshape(n, SIDE, SIDE).transpose(0, 2, 1)


def _square_crops(ink: np.ndarray) -> np.ndarray:
    """Crop the smallest square around each image's ink and resize it to 20x20 (zeros if blank)."""
    n, height, width = ink.shape
    out = np.zeros((n, SIDE, SIDE))
    mask = ink != 0
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    inked = rows.any(axis=1)
    top, left = rows.argmax(axis=1), cols.argmax(axis=1)
    box_h = height - rows[:, ::-1].argmax(axis=1) - top
    box_w = width - cols[:, ::-1].argmax(axis=1) - left
    side = np.maximum(box_h, box_w)
    top, left = top - (side - box_h) // 2, left - (side - box_w) // 2
    for size in np.unique(side[inked]):
        same = np.flatnonzero(inked & (side == size))
        step = max(1, _CROP_BUDGET // int(size) ** 2)  # bounds memory for large camera frames
        for start in range(0, len(same), step):
            members = same[start : start + step]
            out[members] = _resize(_crop(ink, members, top[members], left[members], int(size)))
    return out


def _crop(ink: np.ndarray, members: np.ndarray, top: np.ndarray, left: np.ndarray, size: int) -> np.ndarray:
    """(m, size, size) squares cut from ``ink[members]``; area outside the image is 0."""
    _, height, width = ink.shape
    span = np.arange(size)
    r, c = top[:, None] + span, left[:, None] + span
    flat = (members * (height * width))[:, None, None] + (np.clip(r, 0, height - 1) * width)[:, :, None]
    crops = ink.reshape(-1)[flat + np.clip(c, 0, width - 1)[:, None, :]]
    inside = ((r >= 0) & (r < height))[:, :, None] & ((c >= 0) & (c < width))[:, None, :]
    return crops * inside


def _centre(small: np.ndarray) -> np.ndarray:
    """Paste each 20x20 image into 28x28 so its centre of mass lands on (14, 14)."""
    n = len(small)
    span = np.arange(SIDE, dtype=np.float64)
    mass = small.sum(axis=(1, 2))
    empty = mass == 0
    safe = np.where(empty, 1.0, mass)
    cx = np.where(empty, 10.0, small.sum(axis=1) @ span / safe)
    cy = np.where(empty, 10.0, small.sum(axis=2) @ span / safe)
    x0 = np.rint(14.0 - cx).astype(np.intp)  # rint rounds halves to even, like Python's round
    y0 = np.rint(14.0 - cy).astype(np.intp)
    pad, wide = SIDE, CANVAS + 2 * SIDE
    canvas = np.zeros((n, wide, wide), dtype=np.uint8)
    block = (np.arange(SIDE)[:, None] * wide + np.arange(SIDE)).ravel()
    corner = np.arange(n) * (wide * wide) + (pad + y0) * wide + (pad + x0)
    canvas.reshape(-1)[(corner[:, None] + block).ravel()] = small.astype(np.uint8).ravel()
    return np.ascontiguousarray(canvas[:, pad : pad + CANVAS, pad : pad + CANVAS])


def _decode_all(frames: Sequence[bytes]) -> tuple[list[tuple[list[int], np.ndarray]], list[tuple[int, str]]]:
    """Decode every frame; stack same-size, same-kind frames so each stack is processed as one array."""
    decode = _Decoder()
    raw: dict[tuple[str, int, int], tuple[list[int], list[np.ndarray]]] = {}
    errors: list[tuple[int, str]] = []
    for pos, frame in enumerate(frames):
        try:
            kind, pixels = decode(frame)
        except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:
            errors.append((pos, _reason(exc)))
            continue
        members = raw.setdefault((kind, pixels.shape[0], pixels.shape[1]), ([], []))
        members[0].append(pos)
        members[1].append(pixels)
    stacks = [(positions, _to_ink(key[0], np.stack(pixels))) for key, (positions, pixels) in raw.items()]
    return stacks, errors


def prepare_frames(frames: Sequence[bytes]) -> Prepared:
    """Prepare a micro-batch of camera frames; frames that do not decode are reported, not fatal.

    Returns:
        ``images`` (M, 28, 28) uint8 in input order, ``index`` the input
        position of each, and ``errors`` (position, reason) for the rest.
    """
    stacks, errors = _decode_all(frames)
    positions: list[int] = []
    parts: list[np.ndarray] = []
    for members, ink in stacks:
        positions.extend(members)
        parts.append(_square_crops(ink))
    if errors:
        shown = "; ".join(f"#{pos}: {why}" for pos, why in errors[:5])
        log.warning(
            "prepare: skipped %d of %d frames that are not decodable images (%s)",
            len(errors),
            len(frames),
            shown,
        )
    if not parts:
        return Prepared(np.zeros((0, *SHAPE), np.uint8), np.zeros(0, np.intp), tuple(errors))
    index = np.asarray(positions, dtype=np.intp)
    order = np.argsort(index, kind="stable")
    small = np.concatenate(parts)[order]
    return Prepared(_centre(small), index[order], tuple(errors))


def prepare_batch(frames: Sequence[bytes]) -> np.ndarray:
    """(N, 28, 28) uint8 model input for the frames that decode, in input order."""
    return prepare_frames(frames).images
