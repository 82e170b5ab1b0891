"""The field part of a retrain: the store's labelled images, prepared as the edge prepares them, split seeded.

Which label an image has is settled by `metro_app.labels.settle` (conflicts and
labels that are not digits are left out and counted). A seeded, per-class share of the field images is held out:
the retrain judges the candidate on them and never trains on them.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgemnist.prep import prepare_frames
from metro_app.labels.settle import DIGITS

__all__ = ["FieldSet", "build_field_set", "split_holdout"]


@dataclass(frozen=True, slots=True, eq=False)
class FieldSet:
    """Labelled field images, prepared (N, 28, 28) uint8, split into train and hold-out.

    Attributes:
        excluded: how many labelled images were left out, by reason (the label, or ``undecodable``).
    """

    train_ids: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_ids: tuple[str, ...]
    test_images: np.ndarray
    test_labels: np.ndarray
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, object]:
        return {
            "n_field_train": len(self.train_ids),
            "n_field_test": len(self.test_ids),
            "excluded": dict(self.excluded),
        }


def split_holdout(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Boolean mask of the held-out positions: `share` of each class, at least 1 when it has 2 or more.

    Deterministic for a given seed and label sequence; a class with a single
    image is trained on (it cannot be both).
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"hold-out share must be in [0, 1), got {share}")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    if share == 0.0:
        return held
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) < 2:
            continue
        k = min(len(members) - 1, max(1, int(round(share * len(members)))))
        held[rng.choice(members, size=k, replace=False)] = True
    return held


def _decode(png: str) -> bytes | None:
    try:
        return base64.b64decode(png, validate=True)
    except (binascii.Error, ValueError):
        return None


def build_field_set(rows: Sequence[tuple[str, str, str]], share: float = 0.2, seed: int = 0) -> FieldSet:
    """From (image id, settled label, base64 PNG) rows, the prepared field images split by `split_holdout`.

    A `CONFLICT` label is excluded and counted like any label that is not a digit.

    Rows are sorted by image id first, so the split does not depend on the order the store returns them.
    """
    excluded: Counter[str] = Counter()
    ids: list[str] = []
    frames: list[bytes] = []
    labels: list[int] = []
    for image_id, label, png in sorted(rows):
        if label not in DIGITS:
            excluded[label] += 1
            continue
        frame = _decode(png)
        if frame is None:
            excluded["undecodable"] += 1
            continue
        ids.append(image_id)
        frames.append(frame)
        labels.append(int(label))
    prepared = prepare_frames(frames)
    excluded["undecodable"] += len(prepared.errors)
    if not excluded["undecodable"]:
        del excluded["undecodable"]
    kept_ids = [ids[i] for i in prepared.index]
    kept_labels = np.asarray(labels, dtype=np.int64)[prepared.index]
    held = split_holdout(kept_labels, share, seed)
    return FieldSet(
        train_ids=tuple(i for i, h in zip(kept_ids, held, strict=True) if not h),
        train_images=prepared.images[~held],
        train_labels=kept_labels[~held],
        test_ids=tuple(i for i, h in zip(kept_ids, held, strict=True) if h),
        test_images=prepared.images[held],
        test_labels=kept_labels[held],
        excluded=dict(excluded),
    )
