"""The settling rule: which label an image has, given every label people gave it.

Each labeller's latest label counts (a person may correct themselves); labellers
who disagree make a conflict, and a conflicted image (label `CONFLICT`) is left
out of retrain and counted until a third labeller breaks the tie or a reviewer
resolves it. Labels that are not digits (`Camera Error`, `2nd Opinion`, `Not a
Digit`, `Other`) say something about the camera, not the digit, so they are left
out and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["CONFLICT", "DIGITS", "Settled", "settle_labels"]

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
