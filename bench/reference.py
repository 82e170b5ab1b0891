"""The reference design, per image, as the original edge application did it.

One PNG decode, one preparation with a Python-loop centre of mass, and one
`predict_proba` call per image. Used only as the baseline that bench/edge.py
measures our pipeline against, with the same model and the same frames.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

__all__ = ["reference_prepare", "reference_score"]


def _centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    total = sx = sy = 0
    rows, cols = img.shape
    for y in range(rows):
        for x in range(cols):
            v = int(img[y, x])  # accumulated wide: the reference's 8-bit sums overflow under NumPy 2
            total += v
            sx += x * v
            sy += y * v
    if total == 0:
        return 10.0, 10.0
    return sx / total, sy / total


def reference_prepare(frame: bytes) -> np.ndarray:
    """docs/reference.md "Preparation" for one frame: (28, 28) uint8."""
    img = ImageOps.invert(Image.open(io.BytesIO(frame)).convert("L"))
    box = img.getbbox()
    if box is None:
        small = np.zeros((20, 20), dtype=np.uint8)
    else:
        left, top, right, bottom = box
        w, h = right - left, bottom - top
        side = max(w, h)
        square = img.crop(
            (
                left - (side - w) // 2,
                top - (side - h) // 2,
                left - (side - w) // 2 + side,
                top - (side - h) // 2 + side,
            )
        )
        small = np.asarray(square.resize((20, 20), Image.LANCZOS), dtype=np.uint8)
    cx, cy = _centre_of_mass(small)
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(Image.fromarray(small), (round(14 - cx), round(14 - cy)))
    return np.asarray(canvas, dtype=np.uint8)


def reference_score(frame: bytes, estimator) -> tuple[np.ndarray, np.ndarray, float]:
    """Prepare and score one frame with its own predict_proba call."""
    prepared = reference_prepare(frame)
    probs = estimator.predict_proba(prepared.reshape(1, -1))[0]
    return prepared, probs, float(probs.max())
