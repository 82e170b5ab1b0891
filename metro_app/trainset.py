"""The field part of a retrain: the store's labelled images, prepared as the edge prepares them, split seeded.

Which label an image has is settled by `settle_labels` (the rule is in its
docstring and the README): each labeller's latest label counts (a person may
correct themselves); labellers who disagree make a conflict, and a conflicted
image (label `CONFLICT`) is left out of retrain and counted until a third
labeller breaks the tie or a reviewer resolves it. Labels that are not digits (`Camera Error`, `2nd Opinion`, `Not a Digit`,
`Other`) say something about the camera, not the digit, so they are left
out and counted. A seeded, per-class share of the field images is held out:
the retrain judges the candidate on them and never trains on them.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgemnist.prep import prepare_frames

__all__ = ["CONFLICT", "Settled", "FieldSet", "settle_labels", "build_field_set", "split_holdout"]

DIGITS = tuple(str(d) for d in range(10))
CONFLICT = "conflict"  # the settled label of an image whose labellers disagree: excluded, counted


@dataclass(frozen=True, slots=True)
class Settled:
    """An image's label after the rule: `label` is None while its labellers' disagreement is open.

    Attributes:
        votes: each labeller's latest label of the image.
        resolved_by: the reviewer whose resolution fixed the label, if any.
        last_id: the id of the image's newest label row (orders images oldest first).
    """

    image_id: str
    label: str | None
    votes: dict[str, str]
    resolved_by: str | None = None
    last_id: int = 0

    @property
    def conflict(self) -> bool:
        return self.label is None


def settle_labels(
    labels: Iterable[Mapping[str, object]], resolutions: Iterable[Mapping[str, object]] = ()
) -> dict[str, Settled]:
    """The label of every labelled image, by this rule:

    1. each labeller's *latest* label of the image is their vote (a person may correct themselves);
    2. a resolution (``POST /labels/resolve``) is final: the latest one sets the label;
    3. otherwise, when every vote agrees, that is the label;
    4. otherwise the label with the most votes wins when no other label has as many (a third
       labeller breaks a one-to-one tie);
    5. otherwise the image is in conflict (label None): retrain uses it only once settled.

    Rows are dicts with ``id``, ``image_id``, ``label`` and ``labeller`` (resolutions: ``resolver``).

    >>> rows = [{"id": 1, "image_id": "a", "label": "3", "labeller": "ana"},
    ...         {"id": 2, "image_id": "a", "label": "5", "labeller": "bo"}]
    >>> settle_labels(rows)["a"].conflict
    True
    >>> settle_labels(rows + [{"id": 3, "image_id": "a", "label": "5", "labeller": "cy"}])["a"].label
    '5'
    >>> settle_labels(rows, [{"id": 1, "image_id": "a", "label": "3", "resolver": "lead"}])["a"].label
    '3'
    """
    votes: dict[str, dict[str, str]] = {}
    last: dict[str, int] = {}
    for row in sorted(labels, key=lambda r: int(r["id"])):  # type: ignore[call-overload]
        image = str(row["image_id"])
        votes.setdefault(image, {})[str(row["labeller"])] = str(row["label"])
        last[image] = int(row["id"])  # type: ignore[call-overload]
    resolved: dict[str, tuple[str, str]] = {}
    for row in sorted(resolutions, key=lambda r: int(r["id"])):  # type: ignore[call-overload]
        resolved[str(row["image_id"])] = (str(row["label"]), str(row["resolver"]))
    out = {}
    for image, vote in votes.items():
        if image in resolved:
            label, by = resolved[image]
            out[image] = Settled(image, label, vote, by, last[image])
            continue
        ranked = Counter(vote.values()).most_common()
        wins = len(ranked) == 1 or ranked[0][1] > ranked[1][1]
        out[image] = Settled(image, ranked[0][0] if wins else None, vote, None, last[image])
    return out


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
