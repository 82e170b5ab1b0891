"""The product's core rule: which scored images the edge is unsure of, and so sends home.

An image is uncertain when its top score is at or below the confidence
(default :data:`CONFIDENCE`). A camera whose name starts with ``Test`` sends
every image home; its metrics still count certain and uncertain by score
alone, as the reference does, so windows pass no camera.

>>> is_uncertain([0.95, CONFIDENCE, 0.41]).tolist()
[False, True, True]
>>> is_uncertain([0.95], camera="TestCam-host1").tolist()
[True]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CONFIDENCE", "is_uncertain"]

CONFIDENCE = 0.7


def is_uncertain(
    top_probability: np.ndarray | Sequence[float] | float,
    confidence: float = CONFIDENCE,
    camera: str | None = None,
) -> np.ndarray:
    """Per image, whether it goes home: top score <= `confidence`, or `camera` is a Test camera.

    Args:
        top_probability: each image's highest class probability (``predictions.max(axis=1)``).
        confidence: the threshold; a score exactly at it counts as uncertain.
        camera: the camera name, when the caller decides what is sent; metrics windows and
            evaluations leave it out and count by score alone.
    """
    top = np.asarray(top_probability, dtype=np.float64)
    if camera is not None and camera.startswith("Test"):
        return np.ones(top.shape, dtype=bool)
    return top <= confidence
