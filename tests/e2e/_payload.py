"""A model class that does something when it is built: what a malicious model file would do.

The e2e refusal test saves one with skops and checks that the edge never builds it (the
marker file never appears), after checking that building it really writes the marker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class MarkerOnLoad:
    """Looks like a classifier; writes its marker file when unpickled/unskopsed."""

    classes_ = np.arange(10)

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("code from a model file ran\n")
        self.__dict__.update(state)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.full((len(x), 10), 0.1)
