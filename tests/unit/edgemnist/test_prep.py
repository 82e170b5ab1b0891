"""Preparation equals docs/reference.md "Preparation", and bad frames are reported, not fatal."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image, ImageOps

from edgemnist.data import encode_frames, load_bundled
from edgemnist.prep import Prepared, prepare_batch, prepare_frames


def reference_prepare(frame: bytes) -> np.ndarray:
    """The oracle: docs/reference.md "Preparation", one image at a time, written plainly with PIL."""
    image = ImageOps.invert(Image.open(io.BytesIO(frame)).convert("L"))
    box = image.getbbox()
    if box is None:
        small = Image.new("L", (20, 20), 0)
    else:
        left, top, right, bottom = box
        width, height = right - left, bottom - top
        side = max(width, height)
        left -= (side - width) // 2
        top -= (side - height) // 2
        small = image.crop((left, top, left + side, top + side)).resize((20, 20), Image.LANCZOS)
    pixels = np.asarray(small, dtype=np.int64)
    total = int(pixels.sum())
    if total == 0:
        cx = cy = 10.0
    else:
        cy = int((pixels.sum(axis=1) * np.arange(20)).sum()) / total
        cx = int((pixels.sum(axis=0) * np.arange(20)).sum()) / total
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(small, (round(14 - cx), round(14 - cy)))
    return np.asarray(canvas)


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _assert_matches_reference(frames: list[bytes], prepared: np.ndarray) -> None:
    expected = np.stack([reference_prepare(frame) for frame in frames])
    diff = np.abs(prepared.astype(np.int16) - expected)
    assert diff.max() <= 1, (
        f"{int((diff.reshape(len(frames), -1).max(axis=1) > 1).sum())} images differ by > 1"
    )


def test_all_bundled_frames_match_the_reference() -> None:
    frames = encode_frames(load_bundled("all")).frames
    prepared = prepare_frames(frames)
    assert prepared.images.shape == (5000, 28, 28) and prepared.images.dtype == np.uint8
    assert prepared.errors == () and prepared.index.tolist() == list(range(5000))
    _assert_matches_reference(list(frames), prepared.images)


def test_synthetic_shapes_near_edges_and_other_sizes() -> None:
    """Square crops that leave the image, tiny and huge boxes, frames that are not 28x28."""
    rng = np.random.default_rng(7)
    frames = []
    for i in range(120):
        height, width = ((28, 28), (40, 33), (64, 64), (17, 50), (90, 130))[i % 5]
        ink = np.zeros((height, width), np.uint8)
        top, left = rng.integers(0, height), rng.integers(0, width)
        ink[top : top + rng.integers(1, height), left : left + rng.integers(1, 4)] = rng.integers(1, 256)
        ink[rng.integers(0, height), : rng.integers(1, width)] = 255
        frames.append(_png(255 - ink, "RGB"))
    _assert_matches_reference(frames, prepare_batch(frames))


def test_blank_frame_is_all_zero() -> None:
    out = prepare_batch([_png(np.full((28, 28), 255, np.uint8), "RGB")])
    assert out.shape == (1, 28, 28) and out.dtype == np.uint8 and not out.any()


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "I;16"])
def test_other_png_modes_match_the_reference(mode: str) -> None:
    digits = load_bundled("stream").images[:20]
    if mode == "I;16":
        frames = [_png((255 - d).astype(np.uint16)) for d in digits]
    else:
        frames = [_png(255 - d, mode) for d in digits]
    assert Image.open(io.BytesIO(frames[0])).mode == mode
    _assert_matches_reference(frames, prepare_batch(frames))


def test_rgba_with_colour_and_alpha_matches_reference() -> None:
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (30, 28, 4), dtype=np.uint8)
    rgba[5:20, 8:14, :3] = 0
    frames = [_png(rgba), _png(rgba[..., :3])]
    _assert_matches_reference(frames, prepare_batch(frames))


def test_bad_frames_are_skipped_with_positions(caplog) -> None:
    good = encode_frames(load_bundled("stream")).frames[:4]
    corrupt = bytearray(good[1])
    corrupt[60] ^= 0xFF
    truncated = good[2][: len(good[2]) // 2]
    batch = [good[0], bytes(corrupt), b"", b"hello\n", good[3], truncated, b"\x89PNG\r\n\x1a\n"]
    with caplog.at_level(logging.WARNING, logger="edgemnist.prep"):
        result = prepare_frames(batch)
    assert isinstance(result, Prepared)
    assert result.index.tolist() == [0, 4]
    assert [pos for pos, _ in result.errors] == [1, 2, 3, 5, 6]
    assert all(reason for _, reason in result.errors)
    assert "skipped 5 of 7 frames" in caplog.text
    _assert_matches_reference([good[0], good[3]], result.images)


def test_non_bytes_and_empty_batches() -> None:
    result = prepare_frames([None, 42])  # type: ignore[list-item]
    assert result.images.shape == (0, 28, 28) and result.index.tolist() == [] and len(result.errors) == 2
    empty = prepare_batch([])
    assert empty.shape == (0, 28, 28) and empty.dtype == np.uint8
