"""The hub's field labels as the labels table's Debezium change stream says they are.

A trainer away from the hub's database reads the topic instead of the store:
the same rows (one per label given, primary key ``id``), so the same rule
applies as in `Store.latest_labels`: `metro_app.training.fieldset.settle_labels` (each labeller's
latest label, the majority; an image its labellers disagree on is a conflict, which retrain
leaves out and counts). Resolutions live in their own table: stream it too to see them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgemnist.errors import SchemaError
from edgemnist.kafka.settings import KafkaSettings
from edgemnist_cdc.stream import read_view
from metro_app.labels.settle import CONFLICT, settle_labels

__all__ = ["latest_labels", "labels_from_topic"]


def latest_labels(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(image id, settled label or `trainset.CONFLICT`) of each labelled image, by its newest row, oldest first.

    >>> latest_labels([{"id": 1, "image_id": "a", "label": "3", "labeller": "ana"},
    ...                {"id": 2, "image_id": "a", "label": "5", "labeller": "ana"}])
    [('a', '5')]
    """
    votes = []
    for row in rows:
        try:
            votes.append(
                {"id": int(row["id"]), "image_id": str(row["image_id"]), "label": str(row["label"]),
                 "labeller": str(row.get("labeller") or "")}
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"labels row needs id, image_id and label: {dict(row)}") from exc
    settled = sorted(settle_labels(votes).values(), key=lambda s: s.last_id)
    return [(s.image_id, s.label if s.label is not None else CONFLICT) for s in settled]


def labels_from_topic(
    settings: KafkaSettings, topic: str, *, until_idle: float = 5.0
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Latest (image id, label) pairs from the labels table's change topic, and what was read."""
    view, stats = read_view(settings, topic, until_idle=until_idle)
    return latest_labels(view), stats
