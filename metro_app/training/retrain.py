"""Retrain: base digits plus the field's labels -> a candidate, judged against the serving model, recorded.

One code path for every trigger (`metro-app retrain`, POST /models/retrain,
a command on the control topic). The candidate and the current model are
scored in the same run on the same two hold-outs: the base hold-out (for
the bundled data, the 1,000-digit stream split) and a seeded share of the
labelled field images that is never trained on.

The rule that accepts or refuses a candidate is `metro_app.training.evaluate.decide`. Every
candidate, accepted or refused, is kept in the registry with its figures and reason.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from edgemnist.data import load_training
from edgemnist.errors import ConfigError, EdgeMnistError
from edgemnist.model import (
    MODEL_INPUT,
    Model,
    dump_model,
    ensure_model,
    load_model,
    load_model_bytes,
    prepared_dataset,
    train_model,
)
from edgemnist.wire.messages import parse_timestamp
from metro_app.rollout.watcher import register_rollout
from metro_app.store import Store
from metro_app.training.evaluate import Scores, decide, evaluate_pair
from metro_app.training.fieldset import FieldSet, build_field_set
from metro_app.training.settings import RETRAIN_ENV, RetrainSettings, add_retrain_flags

__all__ = [
    "RETRAIN_ENV",
    "RetrainSettings",
    "RetrainResult",
    "Scores",
    "add_retrain_flags",
    "decide",
    "evaluate_pair",
    "register_initial_model",
    "retrain",
]

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
STAGES = ("current model", "base data", "field labels", "train", "evaluate", "record", "publish")


class Publisher(Protocol):
    def publish(self, store: Store, version: str) -> object: ...


@dataclass(frozen=True, slots=True)
class RetrainResult:
    """What one retrain did: the last line `metro-app retrain` prints, and the API job's result."""

    version: str | None
    parent: str | None
    accepted: bool
    reason: str
    base_accuracy: float | None = None
    field_accuracy: float | None = None
    parent_base_accuracy: float | None = None
    parent_field_accuracy: float | None = None
    n_train: int = 0
    n_field_train: int = 0
    n_field_test: int = 0
    status: str | None = None
    seconds: float = 0.0
    rollout: int | None = None  # the canary rollout registered for it (retrain --canary)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def register_initial_model(store: Store, path: str | Path, *, train: bool = True) -> str | None:
    """Register the hub's first model (`--model`) as ``serving`` while no model serves the fleet.

    The hub calls it when it starts, so the registry shows the model every camera runs from the
    first view on. Returns the version registered, or None when one already serves (nothing
    changes then) or when `path` holds no model and `train` is off; with `train`, a model is
    trained into `path` when it holds none, as the edge does.
    """
    if store.current_model() is not None:
        return None
    if not train and not _has_model_file(Path(path)):
        return None
    model = load_model(ensure_model(path, progress=False))
    if model.path is None:  # pragma: no cover - load_model always sets it
        raise ConfigError(f"--model {path}: no model file")
    reason = f"initial model from {model.path}: every camera runs it until a model is published"
    card = _file_card(model.path)
    if not store.add_model(
        model.version, model.sha256, model.path.read_bytes(), status="serving", reason=reason,
        card={**card, "source": str(model.path)}, created=_created(card),
    ):  # fmt: skip
        store.set_model_status(model.version, "serving", reason)
    log.info("registry had no serving model: %s registered as serving (%s)", model.version, reason)
    return model.version


def _has_model_file(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.glob("*.skops")))


def current_model(store: Store, settings: RetrainSettings) -> Model:
    """The model the fleet runs; on a registry without one, `--model`, registered as serving first."""
    found = store.current_model()
    if found is None:
        register_initial_model(store, settings.model)
        found = store.current_model()
        assert found is not None  # registered just now
    data = store.model_file(found["version"]) or b""
    return load_model_bytes(
        data, expected_sha256=found["sha256"], version=found["version"], name=found["version"]
    )


def _file_card(path: Path) -> dict[str, Any]:
    """The model card beside a model file (it was verified when the model loaded)."""
    try:
        card = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def _created(card: Mapping[str, Any]) -> float | None:
    """When the model was trained, so labels stored after it count as unseen by it."""
    try:
        return parse_timestamp(str(card["created"])).timestamp()
    except (KeyError, ValueError):
        return None


class _Stages:
    def __init__(self, console: bool, on_progress: Progress | None) -> None:
        self._bar = tqdm(total=len(STAGES), desc="retrain", unit="stage", disable=not console)
        self._on_progress = on_progress
        self._done = 0

    def __call__(self, stage: str) -> None:
        self._bar.set_postfix_str(stage)
        if self._on_progress is not None:
            self._on_progress(stage, self._done, len(STAGES))

    def done(self) -> None:
        self._done += 1
        self._bar.update()

    def close(self) -> None:
        self._bar.close()
        if self._on_progress is not None:
            self._on_progress("done", len(STAGES), len(STAGES))


def retrain(
    store: Store,
    settings: RetrainSettings,
    *,
    publisher: Publisher | None = None,
    console: bool = False,
    on_progress: Progress | None = None,
    labels: Sequence[tuple[str, str]] | None = None,
) -> RetrainResult:
    """Build, judge and record one candidate; publish it when accepted and a publisher is given.

    Args:
        labels: (image id, label) pairs to use instead of the store's latest labels (e.g. from
            the labels table's change stream); the images still come from the store.
    """
    started = time.monotonic()
    stage = _Stages(console, on_progress)
    try:
        stage("current model")
        parent = current_model(store, settings)
        stage.done()
        stage("base data")
        train, held_out = load_training(settings.base_data)
        base_train, base_test = prepared_dataset(train), prepared_dataset(held_out)
        stage.done()
        stage("field labels")
        rows = store.latest_labels() if labels is None else store.frames_for(labels)
        field = build_field_set(rows, settings.holdout, settings.seed)
        stage.done()
        if not len(field.train_ids):
            reason = f"no labelled digit images to train on (excluded: {field.excluded or 'none'})"
            return RetrainResult(None, parent.version, False, reason, seconds=time.monotonic() - started)
        stage("train")
        candidate = _Candidate.train(base_train, field, settings, console)
        stage.done()
        stage("evaluate")
        result = _judge(candidate, parent, base_test, field, settings, len(base_train[1]))
        stage.done()
        stage("record")
        status = _record(
            store, candidate, result, _card(result, settings, field, held_out.name, len(base_train[1]))
        )
        stage.done()
        stage("publish")
        rollout, status, reason = _release(store, settings, publisher, result, status)
        stage.done()
        seconds = time.monotonic() - started
        log.info(
            "retrain %s (parent %s) %s in %.1f s: %s", result.version, parent.version, status, seconds, reason
        )
        return RetrainResult(
            **{**result.to_dict(), "status": status, "seconds": seconds, "rollout": rollout, "reason": reason}
        )
    finally:
        stage.close()


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A newly trained model: the loaded model, and the file bytes and figures the registry keeps."""

    model: Model
    sha256: str
    data: bytes
    created: float

    @classmethod
    def train(
        cls,
        base_train: tuple[np.ndarray, np.ndarray],
        field: FieldSet,
        settings: RetrainSettings,
        console: bool,
    ) -> _Candidate:
        estimator = train_model(
            prepared=base_train,
            field=(field.train_images, field.train_labels),
            field_weight=settings.field_weight,
            seed=settings.seed,
            progress=console,
        )
        version, sha, data, created = dump_model(estimator)
        model = load_model_bytes(data, expected_sha256=sha, version=version, name=version)
        return cls(model, sha, data, created.timestamp())


def _judge(
    candidate: _Candidate,
    parent: Model,
    base_test: tuple[np.ndarray, np.ndarray],
    field: FieldSet,
    settings: RetrainSettings,
    n_base: int,
) -> RetrainResult:
    """Score the candidate and the serving model on the same hold-outs and decide; no status yet."""
    scores = evaluate_pair(candidate.model, parent, base_test, field)
    accepted, reason = decide(
        scores[0], scores[1], max_base_drop=settings.max_base_drop, min_field_gain=settings.min_field_gain
    )
    return RetrainResult(
        candidate.model.version, parent.version, accepted, reason, scores[0].base, scores[0].field,
        scores[1].base, scores[1].field, n_base + len(field.train_ids), len(field.train_ids),
        len(field.test_ids),
    )  # fmt: skip


def _record(store: Store, candidate: _Candidate, result: RetrainResult, card: dict[str, Any]) -> str:
    """Keep the candidate in the registry, accepted or refused; return its status."""
    version = candidate.model.version
    store.add_model(
        version, candidate.sha256, candidate.data, parent=result.parent, reason=result.reason, card=card,
        created=candidate.created,
    )  # fmt: skip
    if not result.accepted:
        store.set_model_status(version, "refused", result.reason)
        return "refused"
    return "candidate"


def _release(
    store: Store, settings: RetrainSettings, publisher: Publisher | None, result: RetrainResult, status: str
) -> tuple[int | None, str, str]:
    """An accepted model goes out through a canary rollout or to every camera: (rollout, status, reason)."""
    reason, rollout = result.reason, None
    if result.version is None or not result.accepted:
        return rollout, status, reason
    version = result.version
    if settings.canary:
        rollout, reason = _canary(store, settings, version, reason)
    elif publisher is not None:
        status = _publish(publisher, store, version)
    return rollout, status, reason


def _canary(store: Store, settings: RetrainSettings, version: str, reason: str) -> tuple[int | None, str]:
    """Register the canary rollout of an accepted model; the hub's rollout watcher starts it."""
    try:
        r = register_rollout(store, version, settings.canary, settings.policy(), f"retrain of {version}")
    except EdgeMnistError as exc:
        log.error("model %s was accepted but its canary rollout was not registered: %s", version, exc)
        return None, f"{reason}; canary rollout not registered: {exc}"
    return int(r["id"]), f"{reason}; canary rollout {r['id']} on {settings.canary} registered"


def _publish(publisher: Publisher, store: Store, version: str) -> str:
    try:
        publisher.publish(store, version)
    except EdgeMnistError as exc:
        log.error("model %s was accepted but not published: %s", version, exc)
        return "candidate"
    return "published"


def _card(
    result: RetrainResult, settings: RetrainSettings, field: FieldSet, base_name: str, n_base: int
) -> dict[str, Any]:
    skip = ("version", "parent", "status", "seconds", "rollout")
    out = {k: v for k, v in result.to_dict().items() if k not in skip}
    return {
        **out,
        "n_base_train": n_base,
        "excluded": field.excluded,
        "base_data": settings.base_data,
        "base_holdout": base_name,
        "settings": asdict(settings),
        "field_test_ids": list(field.test_ids),
        "input": MODEL_INPUT,
    }
