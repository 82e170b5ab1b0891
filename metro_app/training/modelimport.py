"""`metro-app models import`: register a model trained elsewhere, judged as a retrained one would be.

The file must be an `edge-mnist train` output: a skops file with its model card
beside it; it is verified (the card's sha256, the skops allow-list) before
anything is stored. It is then scored with the serving model on the registry's
hold-outs (the base hold-out and the seeded field hold-out that retrain uses,
`metro_app.training.evaluate.evaluate_pair`), and registered as a candidate whatever the
verdict: the verdict is advice in its reason, and a canary rollout, not this
score, decides whether the fleet runs it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from edgemnist.data import load_training
from edgemnist.errors import ModelError
from edgemnist.model import load_model, prepared_dataset
from metro_app.store import Store
from metro_app.training.fieldset import build_field_set
from metro_app.training.retrain import RetrainSettings, _created, current_model, decide, evaluate_pair

__all__ = ["import_model"]

log = logging.getLogger(__name__)


def import_model(store: Store, path: str | Path, settings: RetrainSettings) -> dict[str, Any]:
    """Verify, evaluate and register the model at `path` (a .skops file with its card) as a candidate."""
    model = load_model(path)  # the card's sha256 and the allow-list, or ModelError
    assert model.path is not None
    if store.model(model.version) is not None:
        raise ModelError(f"{model.path}: model version {model.version} is already in the registry")
    card = json.loads(model.path.with_suffix(".json").read_text())
    parent = current_model(store, settings)
    _, held_out = load_training(settings.base_data)
    field = build_field_set(store.latest_labels(), settings.holdout, settings.seed)
    mine, theirs = evaluate_pair(model, parent, prepared_dataset(held_out), field)
    _, verdict = decide(
        mine, theirs, max_base_drop=settings.max_base_drop, min_field_gain=settings.min_field_gain
    )
    figures = {
        "base_accuracy": mine.base,
        "field_accuracy": mine.field,
        "parent_base_accuracy": theirs.base,
        "parent_field_accuracy": theirs.field,
        "n_field_test": len(field.test_ids),
        "base_holdout": held_out.name,
    }
    reason = f"imported from {model.path}; evaluation (advice, a canary decides): {verdict}"
    store.add_model(
        model.version,
        model.sha256,
        model.path.read_bytes(),
        parent=parent.version,
        reason=reason,
        card={**card, **figures, "imported_from": str(model.path), "field_test_ids": list(field.test_ids)},
        created=_created(card),
    )
    log.info("model %s imported as a candidate (parent %s): %s", model.version, parent.version, verdict)
    return {k: v for k, v in (store.model(model.version) or {}).items() if k != "card"}
