"""The hub as a streamsx Topology, wired from the same stage objects as `metro-app run`.

`KafkaHub` is the HubLoop (consume, validate, store, dead-letter, commit) as a
streamsx source that emits each committed message; the reference's three
views hang off it with the reference's names, plus FleetMetrics. The build
archive is made offline by streamsx's BUILD_ARCHIVE context (needs Java);
submitting needs an IBM Streams instance (see `submit_to_streams`).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from edgemnist.errors import ConfigError
from edgemnist.wire.messages import KIND_KEYS, message_kind
from metro_app.settings import HubSettings
from metro_app.views.health import fleet_bucket

__all__ = [
    "KafkaHub",
    "IsKind",
    "FleetWindow",
    "build_topology",
    "build_archive",
    "submit_to_streams",
]


# what the hub needs on a Streams instance beyond our own packages, which streamsx bundles itself
_PIP_PACKAGES = (
    "kafka-python>=3.0",
    "crc32c>=2.4",
    "msgspec>=0.18",
    "orjson>=3.9",
    "sqlalchemy>=2.0",
    "psycopg[binary]>=3.1",
    "numpy",
    "pillow",
)


class KafkaHub:
    """streamsx source: the hub loop; yields each stored message as its wire dict, after the commit."""

    def __init__(
        self, settings: HubSettings, bootstrap_servers: str | None = None, credentials: str | None = None
    ):
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.credentials = credentials
        self._loop: Any = None
        self._stop = threading.Event()

    def __enter__(self) -> KafkaHub:
        from edgemnist.kafka.settings import resolve
        from metro_app.ingest.loop import DeadLetterSink, HubLoop
        from metro_app.service import open_kafka
        from metro_app.store import Store

        kafka = resolve(bootstrap_servers=self.bootstrap_servers, credentials=self.credentials)
        consumer, producer = open_kafka(kafka, self.settings)
        self._out: deque[dict[str, Any]] = deque()
        self._loop = HubLoop(
            consumer,
            Store(self.settings.store_url),
            DeadLetterSink(producer, self.settings.dlq_topic),
            on_stored=lambda msgs: self._out.extend(m.to_dict() for m in msgs),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def __call__(self) -> Iterator[dict[str, Any]]:
        while not self._stop.is_set():
            self._loop.step()
            while self._out:
                yield self._out.popleft()


class IsKind:
    """Filter: metrics messages (`camera_metrics`) or uncertain images (`image`), as the reference splits.

    The kind is decided by `edgemnist.wire.messages.message_kind`, the rule the hub's parser uses.
    """

    def __init__(self, key: str) -> None:
        kinds = {k: kind for kind, k in KIND_KEYS.items()}
        if key not in kinds:
            raise ConfigError(f"IsKind: {key!r} is not a message kind key ({', '.join(kinds)})")
        self.key = key
        self._kind = kinds[key]

    def __call__(self, msg: dict[str, Any]) -> bool:
        return message_kind(msg) is self._kind


class AsList:
    """Aggregate: the window's metrics messages as a list (the WindowUncertain tuple)."""

    def __call__(self, msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(msgs)


class FleetWindow:
    """Aggregate: every camera's counts over one window of metrics messages."""

    def __call__(self, msgs: list[dict[str, Any]]) -> dict[str, Any]:
        return fleet_bucket(0, msgs) if msgs else {}


def build_topology(
    settings: HubSettings, bootstrap_servers: str | None = None, credentials: str | None = None
) -> Any:
    from streamsx.topology.topology import Topology

    topo = Topology("MetroEdge", namespace="edgemnist")
    for pkg in _PIP_PACKAGES:
        topo.add_pip_package(pkg)
    stored = topo.source(KafkaHub(settings, bootstrap_servers, credentials), name="KafkaHub")
    metrics = stored.filter(IsKind("camera_metrics"), name="Metrics")
    images = stored.filter(IsKind("image"), name="Images")
    metrics.as_json(name="ClassificationMetricsJson").view(name="ClassificationMetrics")
    window = metrics.last(25).trigger(1).aggregate(AsList(), name="WindowUncertainList")
    window.as_json(name="WindowUncertainJson").view(name="WindowUncertain")
    images.as_json(name="UncertainPredictionsJson").view(name="UncertainPredictions")
    fleet = (
        metrics.last(timedelta(seconds=10))
        .trigger(timedelta(seconds=10))
        .aggregate(FleetWindow(), name="Fleet")
    )
    fleet.as_json(name="FleetMetricsJson").view(name="FleetMetrics")
    return topo


def build_archive(settings: HubSettings, out: Path, bootstrap_servers: str | None = None) -> Path:
    """Build the topology's archive with streamsx's BUILD_ARCHIVE context into `out`; returns its path."""
    from edgemnist.streams import build_archive as _build

    return _build(build_topology(settings, bootstrap_servers), out, name="MetroEdge")


def submit_to_streams(settings: HubSettings, name: str, kafka: Any) -> dict[str, Any]:
    """Submit to the IBM Streams instance named by CP4D_URL/STREAMS_INSTANCE_ID (+ STREAMS_USERNAME/PASSWORD)."""
    import streamsx.topology.context as ctx

    from edgemnist.streams import java_home

    if not (os.environ.get("CP4D_URL") or os.environ.get("STREAMS_INSTANCE_ID")):
        raise ConfigError(
            "--target streams needs an IBM Streams instance: set CP4D_URL (or STREAMS_INSTANCE_ID), "
            "STREAMS_USERNAME and STREAMS_PASSWORD"
        )
    os.environ["JAVA_HOME"] = java_home()
    topo = build_topology(settings, ",".join(kafka.bootstrap_servers) or None)
    job_config = ctx.JobConfig(job_name=name)
    cfg: dict[str, Any] = {ctx.ConfigParams.SSL_VERIFY: False}
    job_config.add(cfg)
    result = ctx.submit(ctx.ContextTypes.DISTRIBUTED, topo, cfg)
    return {k: v for k, v in dict(result).items() if not k.startswith("_")}
