"""The edge's settings: one frozen object built from CLI flags and EDGE_MNIST_* env vars."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from edgemnist import topics
from edgemnist.cliargs import check_fields, env_flag
from edgemnist.distort import parse_distortion
from edgemnist.kafka.settings import state_dir
from edgemnist.uncertainty import CONFIDENCE

__all__ = ["EdgeSettings", "add_edge_flags", "EDGE_ENV", "EDGE_ENV_VARS", "SUMMARY_ENV"]


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Parameters as in the reference (confidence, parallelism, repeat, delay, camera,
    metrics duration, source) plus ours (model, outbox, batching, distortion, model updates)."""

    model: Path = Path("models")
    camera: str = "Camera"
    confidence: float = CONFIDENCE
    parallelism: int = 1
    repeat: int = 0
    delay: float = 0.0
    metrics_duration: float = 10.0
    source: str = "bundled"
    topic: str = topics.EVENTS
    outbox: Path | None = None
    outbox_max_mb: float = 256.0
    batch_size: int = 256
    drain_timeout: float = 300.0
    dry_run: bool = False
    distort: str = ""
    models_topic: str = topics.MODELS
    results_topic: str | None = None  # one compact result per scored image, when set
    http_port: int | None = None  # HTTP push into this camera, when set
    http_host: str = "127.0.0.1"
    http_no_auth: bool = False  # HTTP push without a token: only on a closed network
    max_uncertain_per_minute: int = 0  # 0 = no cap
    trusted_keys: Path | None = None  # hub.pub lines; models must be signed by one of them
    allow_unsigned_models: bool = False
    shadow_cap: int = 20  # disagreement frames of a shadow model sent per metrics window
    metrics_port: int | None = None  # Prometheus metrics (GET /metrics), when set
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        parse_distortion(self.distort)  # a bad spec fails at start-up, naming the bad part
        checks = [
            ("confidence", 0.0 <= self.confidence <= 1.0, "must be between 0 and 1"),
            ("parallelism", self.parallelism >= 1, "must be at least 1"),
            ("repeat", self.repeat >= 0, "must be 0 (forever) or more"),
            ("delay", self.delay >= 0, "must not be negative"),
            ("metrics_duration", self.metrics_duration > 0, "must be positive"),
            ("outbox_max_mb", self.outbox_max_mb > 0, "must be positive"),
            ("batch_size", 1 <= self.batch_size <= 65536, "must be between 1 and 65536"),
            ("camera", bool(self.camera) and len(self.camera) <= 128, "must be 1 to 128 characters"),
            ("topic", bool(self.topic), "must not be empty"),
            ("results_topic", self.results_topic != self.topic, "must differ from --topic"),
            ("http_port", self.http_port is None or 0 <= self.http_port <= 65535, "must be a TCP port"),
            (
                "metrics_port",
                self.metrics_port is None or 0 <= self.metrics_port <= 65535,
                "must be a TCP port",
            ),
            ("max_uncertain_per_minute", self.max_uncertain_per_minute >= 0, "must be 0 (no cap) or more"),
            ("shadow_cap", self.shadow_cap >= 0, "must be 0 or more"),
        ]
        check_fields(self, checks)

    @property
    def outbox_path(self) -> Path:
        return self.outbox or state_dir() / f"outbox-{self.camera}.db"

    @property
    def models_dir(self) -> Path:
        """Where models accepted from the models topic are kept, next to the outbox."""
        return self.outbox_path.parent / f"models-{self.camera}"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EdgeSettings:
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        for name in ("model", "outbox", "trusted_keys"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        if values.get("distort") is None:
            values.pop("distort", None)
        return cls(**values)


# flag, env var, type, help — the one table of the edge's settings
EDGE_ENV: tuple[tuple[str, str, type, str], ...] = (
    ("--model", "EDGE_MNIST_MODEL", str, "a .skops model, or a directory whose newest model is used"),
    (
        "--camera",
        "EDGE_MNIST_CAMERA",
        str,
        "camera parameter; the camera is named <camera>-<hostname>; "
        "a camera starting with 'Test' sends every image",
    ),
    ("--confidence", "EDGE_MNIST_CONFIDENCE", float, "images scored at or below this probability go home"),
    ("--parallelism", "EDGE_MNIST_PARALLELISM", int, "scoring worker processes"),
    ("--repeat", "EDGE_MNIST_REPEAT", int, "passes over the data set; 0 = forever"),
    ("--delay", "EDGE_MNIST_DELAY", float, "seconds between images; 0 = as fast as possible"),
    ("--metrics-duration", "EDGE_MNIST_METRICS_DURATION", float, "seconds per metrics window"),
    (
        "--source",
        "EDGE_MNIST_SOURCE",
        str,
        "bundled | bundled-train | bundled-all | digits | openml | mnist-idx:IMAGES[,LABELS] | png:DIR",
    ),
    ("--topic", "EDGE_MNIST_TOPIC", str, "Kafka topic for metrics and uncertain images"),
    (
        "--outbox",
        "EDGE_MNIST_OUTBOX",
        str,
        "SQLite file of the durable outbox (default $EDGE_MNIST_STATE_DIR/outbox-<camera>.db)",
    ),
    (
        "--outbox-max-mb",
        "EDGE_MNIST_OUTBOX_MAX_MB",
        float,
        "outbox size bound; when full the oldest uncertain images are dropped, never metrics",
    ),
    ("--batch-size", "EDGE_MNIST_BATCH_SIZE", int, "images per micro-batch"),
    (
        "--drain-timeout",
        "EDGE_MNIST_DRAIN_TIMEOUT",
        float,
        "at the end of a finite run, seconds to wait for Kafka to acknowledge everything",
    ),
    (
        "--distort",
        "EDGE_MNIST_DISTORT",
        str,
        "distort every image before it becomes a frame, labels kept (a drifting camera): "
        "rotate:DEG, thicken:PX, noise:SIGMA, comma-separated, e.g. rotate:25,noise:8",
    ),
    (
        "--models-topic",
        "EDGE_MNIST_MODELS_TOPIC",
        str,
        "Kafka topic of published models; the newest one for this camera is verified and "
        "hot-swapped in; empty disables",
    ),
    (
        "--results-topic",
        "EDGE_MNIST_RESULTS_TOPIC",
        str,
        "also send one compact result per scored image to this topic (default off)",
    ),
    (
        "--http-port",
        "EDGE_MNIST_HTTP_PORT",
        int,
        "serve HTTP push (POST /frames, /push?start_idx=&end_idx=, a form at /) on this port (default off)",
    ),
    ("--http-host", "EDGE_MNIST_HTTP_HOST", str, "address the HTTP push listens on"),
    (
        "--metrics-port",
        "EDGE_MNIST_METRICS_PORT",
        int,
        "serve Prometheus metrics (images scored, uncertain sent, outbox, model) at /metrics on this port "
        "(default off)",
    ),
    ("--metrics-host", "EDGE_MNIST_METRICS_HOST", str, "address the Prometheus metrics listen on"),
    (
        "--max-uncertain-per-minute",
        "EDGE_MNIST_MAX_UNCERTAIN_PER_MINUTE",
        int,
        "send at most this many uncertain images in any 60 s (sliding window); the rest are held back "
        "and counted in each metrics message's held_back; metrics are never capped; 0 = no cap",
    ),
    (
        "--trusted-keys",
        "EDGE_MNIST_TRUSTED_KEYS",
        str,
        "file of public keys (hub.pub lines, one per key); only models signed by one of them are "
        "served (default: the hub.pub in $EDGE_MNIST_STATE_DIR/keys, made by a hub on this machine; "
        "with no key at all every published model is refused)",
    ),
    (
        "--allow-unsigned-models",
        "EDGE_MNIST_ALLOW_UNSIGNED_MODELS",
        bool,
        "also serve unsigned models, and with no trusted key every model unchecked for origin "
        "(a warning at every model)",
    ),
    (
        "--shadow-cap",
        "EDGE_MNIST_SHADOW_CAP",
        int,
        "send at most this many frames per metrics window where a shadow model disagrees with the "
        "serving one; the rest are counted in the window's shadow.held_back",
    ),
)


SUMMARY_ENV = "EDGE_MNIST_SUMMARY"  # edge-app run --summary: the run summary's JSON-lines file

#: The edge's ``EDGE_MNIST_*`` env vars (name -> help text): its flags' and the secret it reads.
EDGE_ENV_VARS: dict[str, str] = {env: text for _, env, _, text in EDGE_ENV} | {
    "EDGE_MNIST_EDGE_TOKEN": "bearer token that HTTP pushes need; when unset, one is generated and printed "
    "at start (secret; never a flag)",
    SUMMARY_ENV: "file the run's summary is appended to as one JSON line when the run ends",
}


def add_edge_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    defaults = EdgeSettings()
    for flag, env, typ, text in EDGE_ENV:
        name = flag[2:].replace("-", "_")
        default = getattr(defaults, name)
        env_flag(
            parser,
            flag,
            env,
            default=None if default in (None, "") else typ(default) if typ is not str else str(default),
            type=typ,
            help=text,
            environ=environ,
        )
