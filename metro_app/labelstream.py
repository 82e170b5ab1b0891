"""The hub's field labels as the labels table's Debezium change stream says they are.

A trainer away from the hub's database reads the topic instead of the store:
the same rows (one per label given, primary key ``id``), so the same rule
applies as in `Store.latest_labels`: the newest label row of an image wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgemnist.cdcstream import read_view
from edgemnist.errors import SchemaError
from edgemnist.settings import KafkaSettings

__all__ = ["latest_labels", "labels_from_topic"]


def latest_labels(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(image id, label) of each image's newest label row (highest ``id``), oldest first."""
    newest: dict[str, tuple[int, str]] = {}
    for row in rows:
        try:
            row_id, image_id, label = int(row["id"]), str(row["image_id"]), str(row["label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"labels row needs id, image_id and label: {dict(row)}") from exc
        if image_id not in newest or row_id > newest[image_id][0]:
            newest[image_id] = (row_id, label)
    return [(image_id, label) for image_id, (_, label) in sorted(newest.items(), key=lambda kv: kv[1][0])]


def labels_from_topic(
    settings: KafkaSettings, topic: str, *, until_idle: float = 5.0
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Latest (image id, label) pairs from the labels table's change topic, and what was read."""
    view, stats = read_view(settings, topic, until_idle=until_idle)
    return latest_labels(view), stats
