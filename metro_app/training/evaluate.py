"""Judging a candidate: both models scored on the same hold-outs, and the rule that accepts or refuses it.

The decision rule (`decide`): a candidate is accepted when its field
accuracy is more than ``min_field_gain`` points above the current model's
(default 0: it must rise) and its base accuracy is at most ``max_base_drop``
points below the current model's (default 2.0: the base hold-out has 1,000
digits, so the same retrain differs by about 0.5 points from run to run). Without a field hold-out
nothing shows the candidate is better, so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgemnist.model import Model
from metro_app.training.fieldset import FieldSet

__all__ = ["Scores", "decide", "evaluate_pair"]


@dataclass(frozen=True, slots=True)
class Scores:
    """Accuracy on the base hold-out, and on the field hold-out (None when it is empty)."""

    base: float
    field: float | None


def decide(
    candidate: Scores, parent: Scores, *, max_base_drop: float = 2.0, min_field_gain: float = 0.0
) -> tuple[bool, str]:
    """Accept or refuse a candidate against the serving model; the reason carries the figures."""
    if candidate.field is None or parent.field is None:
        return False, "refused: no labelled field images held out, so nothing shows the candidate is better"
    gain = 100.0 * (candidate.field - parent.field)
    drop = 100.0 * (parent.base - candidate.base)
    figures = (
        f"field accuracy {parent.field:.3f} -> {candidate.field:.3f} ({gain:+.1f} points), "
        f"base accuracy {parent.base:.3f} -> {candidate.base:.3f} ({-drop:+.1f} points)"
    )
    if gain <= min_field_gain + 1e-9:
        return False, f"refused: field accuracy must rise by more than {min_field_gain:g} points; {figures}"
    if drop > max_base_drop + 1e-9:
        return False, f"refused: base accuracy may fall at most {max_base_drop:g} points; {figures}"
    return True, f"accepted: {figures}"


def _accuracy(model: Model, images: np.ndarray, labels: np.ndarray) -> float | None:
    if not len(labels):
        return None
    return float((model.predict_proba(images).argmax(axis=1) == labels).mean())


def evaluate_pair(
    candidate: Model, parent: Model, base_test: tuple[np.ndarray, np.ndarray], field: FieldSet
) -> tuple[Scores, Scores]:
    """Candidate and serving model on the same two hold-outs, in the same run."""
    return tuple(  # type: ignore[return-value]
        Scores(_accuracy(m, *base_test) or 0.0, _accuracy(m, field.test_images, field.test_labels))
        for m in (candidate, parent)
    )
