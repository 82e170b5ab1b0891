"""Fixtures the edge's unit tests share."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edgemnist.data import load_frames
from edgemnist.prep import prepare_frames
from metro_app.testing import wait_until
from tests.helpers import train_small_model


@pytest.fixture(scope="module")
def probe() -> np.ndarray:
    return prepare_frames(load_frames("bundled").frames[:32]).images


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> tuple[Path, Path]:
    """Two small models of different versions (a: 800 images, seed 0; b: 1,200 images, seed 1)."""
    out = tmp_path_factory.mktemp("two-models")
    a = train_small_model(out, n=800, seed=0)
    made = int(time.time())  # versions carry the second they were made: the next model, the next second
    wait_until(lambda: int(time.time()) > made, 5, "the next second", every=0.01)
    b = train_small_model(out, n=1200, seed=1)
    return a, b
