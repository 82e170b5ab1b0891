"""Rows of the model registry as the API shows them: the card's figures lifted to the top."""

from __future__ import annotations

import json
from typing import Any

from metro_app.store.rows import iso

__all__ = ["CARD_FIGURES", "model_dict"]

# figures retrain writes into a model's card that GET /models shows at the top level
CARD_FIGURES = (
    "base_accuracy",
    "field_accuracy",
    "parent_base_accuracy",
    "parent_field_accuracy",
    "n_train",
    "n_field_train",
    "n_field_test",
)


def model_dict(row: Any, events: list[Any]) -> dict[str, Any]:
    """One registry row (without its bytes) and its events, oldest event first."""
    card = json.loads(row.card)
    return {
        "version": row.version,
        "parent": row.parent,
        "status": row.status,
        "sha256": row.sha256,
        "created": iso(row.created),
        "updated": iso(row.updated),
        "reason": row.reason,
        **{key: card.get(key) for key in CARD_FIGURES},
        "card": card,
        "events": [{"status": e.status, "time": iso(e.time), "reason": e.reason} for e in events],
    }
