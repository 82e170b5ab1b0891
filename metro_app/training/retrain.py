"""Retrain: base digits plus the field's labels -> a candidate, judged against the serving model, recorded.

One code path for every trigger (`metro-app retrain`, POST /models/retrain,
a command on the control topic). The candidate and the current model are
scored in the same run on the same two hold-outs: the base hold-out (for
the bundled data, the 1,000-digit stream split) and a seeded share of the
labelled field images that is never trained on.

The decision rule (`decide`): a candidate is accepted when its field
accuracy is more than ``min_field_gain`` points above the current model's
(default 0: it must rise) and its base accuracy is at most ``max_base_drop``
points below the current model's (default 2.0: the base hold-out has 1,000
digits, so the same retrain differs by about 0.5 points from run to run). Without a field hold-out
nothing shows the candidate is better, so it is refused. Every candidate,
accepted or refused, is kept in the registry with its figures and reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from edgemnist.cliargs import check_fields, env_flag
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
from metro_app.rollout.policy import Policy
from metro_app.rollout.watcher import register_rollout
from metro_app.store import Store
from metro_app.training.fieldset import FieldSet, build_field_set

__all__ = [
    "RETRAIN_ENV",
    "RetrainSettings",
    "RetrainResult",
    "Scores",
    "add_retrain_flags",
    "decide",
    "evaluate_pair",
    "retrain",
]

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
STAGES = ("current model", "base data", "field labels", "train", "evaluate", "record", "publish")


class Publisher(Protocol):
    def publish(self, store: Store, version: str) -> object: ...


_POLICY = Policy()


@dataclass(frozen=True, slots=True)
class RetrainSettings:
    """How a candidate is built and judged; every trigger uses the hub's one copy."""

    base_data: str = "bundled"
    model: str = "models"
    holdout: float = 0.2
    seed: int = 0
    max_base_drop: float = 2.0
    min_field_gain: float = 0.0
    field_weight: int = 1
    canary: str = ""  # comma-separated cameras: an accepted model goes out through a canary rollout
    canary_windows: int = _POLICY.windows
    max_accuracy_drop: float = _POLICY.max_accuracy_drop
    max_uncertain_rise: float = _POLICY.max_uncertain_rise
    canary_timeout: float = _POLICY.timeout

    def __post_init__(self) -> None:
        checks = [
            ("holdout", 0.0 <= self.holdout < 1.0, "must be in [0, 1)"),
            ("max_base_drop", 0.0 <= self.max_base_drop <= 100.0, "must be 0 to 100 points"),
            ("min_field_gain", 0.0 <= self.min_field_gain <= 100.0, "must be 0 to 100 points"),
            ("field_weight", 1 <= self.field_weight <= 100, "must be 1 to 100"),
        ]
        check_fields(self, checks)
        self.policy()

    def policy(self) -> Policy:
        """The canary rule for rollouts this retrain starts."""
        return Policy(
            self.canary_windows, self.max_accuracy_drop, self.max_uncertain_rise, self.canary_timeout
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RetrainSettings:
        return cls(
            **{f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
        )


# the retrain policy's flags; the first model comes from the hub's --model (metro_app.settings)
RETRAIN_ENV: tuple[tuple[str, str, type, str], ...] = (
    ("--base-data", "EDGE_MNIST_BASE_DATA", str, "base training data: bundled, mnist-idx:DIR, openml"),
    ("--holdout", "EDGE_MNIST_HOLDOUT", float, "share of labelled field images held out, never trained on"),
    ("--seed", "EDGE_MNIST_SEED", int, "seed of the hold-out split and the training"),
    ("--max-base-drop", "EDGE_MNIST_MAX_BASE_DROP", float, "accuracy points the base hold-out may lose"),
    (
        "--min-field-gain",
        "EDGE_MNIST_MIN_FIELD_GAIN",
        float,
        "points the field hold-out must gain, more than",
    ),
    ("--field-weight", "EDGE_MNIST_FIELD_WEIGHT", int, "times each field image is repeated in training"),
    (
        "--canary",
        "EDGE_MNIST_CANARY",
        str,
        "roll an accepted model out through these canary cameras (comma-separated) instead of "
        "publishing it to every camera ('' = every camera at once)",
    ),
    (
        "--canary-windows",
        "EDGE_MNIST_CANARY_WINDOWS",
        int,
        "metrics windows each canary camera sends within bounds before the model is promoted",
    ),
    ("--max-accuracy-drop", "EDGE_MNIST_MAX_ACCURACY_DROP", float, "live accuracy points a canary may lose"),
    (
        "--max-uncertain-rise",
        "EDGE_MNIST_MAX_UNCERTAIN_RISE",
        float,
        "uncertain-share points a canary may gain",
    ),
    (
        "--canary-timeout",
        "EDGE_MNIST_CANARY_TIMEOUT",
        float,
        "seconds a canary has to send its windows; then it is rolled back",
    ),
)


def add_retrain_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    defaults = RetrainSettings()
    for flag, env, typ, text in RETRAIN_ENV:
        default = getattr(defaults, flag[2:].replace("-", "_"))
        env_flag(parser, flag, env, default=default, type=typ, help=text, environ=environ)


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


def current_model(store: Store, settings: RetrainSettings) -> Model:
    """The newest published model; on an empty registry, `--model`, registered as the first published one."""
    found = store.current_model()
    if found is None:
        model = load_model(ensure_model(settings.model, progress=False))
        if model.path is None:  # pragma: no cover - load_model always sets it
            raise ConfigError(f"--model {settings.model}: no model file")
        reason = f"initial model from {model.path}"
        card = _file_card(model.path)
        if not store.add_model(
            model.version, model.sha256, model.path.read_bytes(), status="published", reason=reason,
            card={**card, "source": str(model.path)}, created=_created(card),
        ):  # fmt: skip
            store.set_model_status(model.version, "published", reason)
        log.info("registry was empty: %s registered as published (%s)", model.version, reason)
        return model
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
        estimator = train_model(
            prepared=base_train,
            field=(field.train_images, field.train_labels),
            field_weight=settings.field_weight,
            seed=settings.seed,
            progress=console,
        )
        version, sha, data, created = dump_model(estimator)
        candidate = load_model_bytes(data, expected_sha256=sha, version=version, name=version)
        stage.done()
        stage("evaluate")
        scores = evaluate_pair(candidate, parent, base_test, field)
        accepted, reason = decide(
            scores[0], scores[1], max_base_drop=settings.max_base_drop, min_field_gain=settings.min_field_gain
        )
        stage.done()
        stage("record")
        result = RetrainResult(
            version, parent.version, accepted, reason, scores[0].base, scores[0].field, scores[1].base,
            scores[1].field, len(base_train[1]) + len(field.train_ids), len(field.train_ids),
            len(field.test_ids),
        )  # fmt: skip
        card = _card(result, settings, field, held_out.name, len(base_train[1]))
        store.add_model(
            version, sha, data, parent=parent.version, reason=reason, card=card, created=created.timestamp()
        )
        status = "candidate"
        if not accepted:
            store.set_model_status(version, "refused", reason)
            status = "refused"
        stage.done()
        stage("publish")
        rollout = None
        if accepted and settings.canary:
            rollout, reason = _canary(store, settings, version, reason)
        elif accepted and publisher is not None:
            status = _publish(publisher, store, version)
        stage.done()
        seconds = time.monotonic() - started
        log.info("retrain %s (parent %s) %s in %.1f s: %s", version, parent.version, status, seconds, reason)
        return RetrainResult(
            **{**result.to_dict(), "status": status, "seconds": seconds, "rollout": rollout, "reason": reason}
        )
    finally:
        stage.close()


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
