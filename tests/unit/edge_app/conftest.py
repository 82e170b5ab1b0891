"""Fixtures the edge's unit tests share."""

from __future__ import annotations

import numpy as np
import pytest

from edgemnist.data import load_frames
from edgemnist.prep import prepare_frames


@pytest.fixture(scope="module")
def probe() -> np.ndarray:
    return prepare_frames(load_frames("bundled").frames[:32]).images
