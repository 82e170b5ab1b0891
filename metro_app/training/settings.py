"""The retrain settings every trigger shares, and the flags and env vars that set them."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields

from edgemnist.cliargs import check_fields, env_flag
from metro_app.rollout.policy import Policy

__all__ = ["RETRAIN_ENV", "RetrainSettings", "add_retrain_flags"]

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
    shadow_labels: int = _POLICY.shadow_labels  # 0: no shadow stage, the canary serves at once

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
            self.canary_windows, self.max_accuracy_drop, self.max_uncertain_rise, self.canary_timeout,
            shadow=self.shadow_labels > 0, shadow_labels=max(self.shadow_labels, 1),
        )  # fmt: skip

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
    (
        "--shadow-labels",
        "EDGE_MNIST_SHADOW_LABELS",
        int,
        "labelled disagreements that decide a rollout's shadow stage (0: no shadow stage)",
    ),
)


def add_retrain_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    defaults = RetrainSettings()
    for flag, env, typ, text in RETRAIN_ENV:
        default = getattr(defaults, flag[2:].replace("-", "_"))
        env_flag(parser, flag, env, default=default, type=typ, help=text, environ=environ)
