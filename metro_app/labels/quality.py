"""Label quality: each labeller's count and agreement, open conflicts, Camera Error shares per camera.

All pure, over the rows `Store.label_votes` returns and the `trainset.settle_labels` result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from metro_app.labels.settle import Settled

__all__ = ["CAMERA_ERROR", "LABELS", "labeller_stats", "conflicts", "camera_error_counts"]

CAMERA_ERROR = "Camera Error"
#: What a person may answer for an image: a digit, or why it is none (the Correction Station's buttons).
LABELS = tuple(str(d) for d in range(10)) + (CAMERA_ERROR, "2nd Opinion", "Not a Digit", "Other")


def labeller_stats(
    votes: Iterable[Mapping[str, Any]], settled: Mapping[str, Settled]
) -> list[dict[str, Any]]:
    """Per labeller: labels given, images labelled, and agreement with the settled label.

    `compared` counts the labeller's images that someone else also labelled (or a reviewer
    resolved); `agreed`, those where the labeller's latest label is the settled one. An open
    conflict counts as compared and not agreed. `agreement` = agreed / compared (None when 0).

    >>> from metro_app.labels.settle import settle_labels
    >>> rows = [{"id": 1, "image_id": "a", "label": "3", "labeller": "ana"},
    ...         {"id": 2, "image_id": "a", "label": "3", "labeller": "bo"},
    ...         {"id": 3, "image_id": "b", "label": "1", "labeller": "ana"},
    ...         {"id": 4, "image_id": "b", "label": "7", "labeller": "bo"}]
    >>> [(s["labeller"], s["labels"], s["agreement"]) for s in labeller_stats(rows, settle_labels(rows))]
    [('ana', 2, 0.5), ('bo', 2, 0.5)]
    """
    given: Counter[str] = Counter(str(v["labeller"]) for v in votes)
    out: dict[str, dict[str, Any]] = {
        name: {"labeller": name, "labels": n, "images": 0, "compared": 0, "agreed": 0, "conflicts": 0}
        for name, n in given.items()
    }
    for s in settled.values():
        shared = len(s.votes) > 1 or s.resolved_by is not None
        for name, label in s.votes.items():
            row = out.setdefault(
                name, {"labeller": name, "labels": 0, "images": 0, "compared": 0, "agreed": 0, "conflicts": 0}
            )
            row["images"] += 1
            if shared:
                row["compared"] += 1
                row["agreed"] += int(label == s.label)
            row["conflicts"] += int(s.conflict)
    for row in out.values():
        row["agreement"] = row["agreed"] / row["compared"] if row["compared"] else None
    return sorted(out.values(), key=lambda r: (-r["labels"], r["labeller"]))


def conflicts(settled: Mapping[str, Settled]) -> list[dict[str, Any]]:
    """The images whose labellers disagree, newest label first, with each labeller's latest label."""
    found = [s for s in settled.values() if s.conflict]
    found.sort(key=lambda s: -s.last_id)
    return [{"image_id": s.image_id, "votes": dict(s.votes)} for s in found]


def camera_error_counts(
    settled: Mapping[str, Settled], camera_of: Mapping[str, str]
) -> dict[str, tuple[int, int, int]]:
    """Per camera: (settled labels that are Camera Error, settled labels, newest label id).

    Conflicted images and images of no known camera (training events) count nowhere.
    """
    out: dict[str, list[int]] = {}
    for image, s in settled.items():
        cam = camera_of.get(image)
        if cam is None or s.conflict:
            continue
        acc = out.setdefault(cam, [0, 0, 0])
        acc[0] += int(s.label == CAMERA_ERROR)
        acc[1] += 1
        acc[2] = max(acc[2], s.last_id)
    return {cam: (a[0], a[1], a[2]) for cam, a in out.items()}
