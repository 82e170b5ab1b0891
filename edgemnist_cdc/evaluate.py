"""Online evaluation of a model on a digit table's change stream: running accuracy and log loss.

Every row the stream says is in the table is scored once, when it arrives (or
again when it is updated); a deleted row leaves the figures. So after the
stream is read, the figures equal an offline evaluation of the same model on
the table's rows, and while rows arrive they show how the score converges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgemnist.model import Model, prepared_dataset
from edgemnist_cdc.events import ChangeEvent, digits_dataset

__all__ = ["StreamEvaluator"]

_EPS = 1e-15


class StreamEvaluator:
    """Scores each batch of change events; ``summary()`` is the running figure."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self._scores: dict[Any, tuple[bool, float]] = {}
        self.batches = 0
        self.scored = 0

    def __call__(self, events: Sequence[ChangeEvent]) -> int:
        """Apply one batch; returns how many rows were scored in it."""
        latest: dict[Any, ChangeEvent] = {}
        for event in events:
            latest[event.key] = event  # within a batch only the last change of a row counts
        gone = [k for k, e in latest.items() if e.row is None]
        for key in gone:
            self._scores.pop(key, None)
        live = [(k, e.row) for k, e in latest.items() if e.row is not None]
        if live:
            dataset, _ = digits_dataset("stream-batch", [row for _, row in live])
            images, labels = prepared_dataset(dataset)
            proba = self._model.predict_proba(images)
            predicted = proba.argmax(axis=1)
            loss = -np.log(np.clip(proba[np.arange(len(labels)), labels], _EPS, 1.0))
            for (key, _), ok, item in zip(live, predicted == labels, loss, strict=True):
                self._scores[key] = (bool(ok), float(item))
        self.batches += 1
        self.scored += len(live)
        return len(live)

    def summary(self) -> dict[str, Any]:
        n = len(self._scores)
        correct = sum(ok for ok, _ in self._scores.values())
        loss = math.fsum(item for _, item in self._scores.values())
        return {
            "count": n,
            "correct": int(correct),
            "accuracy": correct / n if n else 0.0,
            "log_loss": loss / n if n else 0.0,
            "batches": self.batches,
            "scored": self.scored,
            "model": self._model.version,
        }
