"""The edge's Prometheus metrics (`edge-app run --metrics-port`), read from the run's live counts.

Nothing is counted twice: the collector reads `RunStats` (what the runner counts anyway), the
outbox's pending and dropped counts, and the serving model, each time Prometheus scrapes. The
registry is the exporter's own, never the process-global one. The server binds 127.0.0.1 unless
``--metrics-host`` says otherwise, and serves reads only (no token: counts, no images or data).

>>> from edge_app.runner import RunStats
>>> stats = RunStats(camera="Cam-a", scored=40, uncertain_sent=3, model_version="m1")
>>> text = EdgeMetrics(stats).exposition().decode()
>>> 'edge_mnist_edge_images_scored_total{camera="Cam-a"} 40.0' in text
True
>>> 'edge_mnist_edge_model_info{camera="Cam-a",version="m1"} 1.0' in text
True
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_app.runner import RunStats
from edge_app.sinks import Sink

__all__ = ["EdgeMetrics"]

log = logging.getLogger(__name__)

_COUNTERS = (
    ("images_scored", "scored", "Images this edge scored since it started"),
    ("images_corrupt", "corrupt", "Frames that could not be decoded or prepared"),
    ("uncertain_sent", "uncertain_sent", "Uncertain images handed to the outbox for the hub"),
    (
        "uncertain_held_back",
        "uncertain_held_back",
        "Uncertain images kept home by --max-uncertain-per-minute",
    ),
    ("metrics_windows_sent", "metrics_sent", "Metrics windows handed to the outbox"),
    ("images_labelled", "labelled", "Scored images whose true class the source knows"),
    ("images_correct", "correct", "Labelled images scored right (live accuracy = correct / labelled)"),
)


class EdgeMetrics:
    """A registry over one run's `RunStats` and sink; `serve` exposes it over HTTP."""

    def __init__(self, stats: RunStats, sink: Sink | None = None) -> None:
        self.stats = stats
        self.sink = sink
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_EdgeCollector(self))
        self._server: Any = None

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> int:
        """Serve GET /metrics on host:port in a daemon thread; returns the port (0 picks a free one)."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        bound = int(self._server.server_port)
        log.info("Prometheus metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _EdgeCollector(Collector):
    def __init__(self, edge: EdgeMetrics) -> None:
        self._edge = edge

    def collect(self) -> Iterator[Metric]:
        stats = self._edge.stats
        camera = stats.camera or "unknown"
        for name, attr, text in _COUNTERS:
            family = CounterMetricFamily(f"edge_mnist_edge_{name}", text, labels=["camera"])
            family.add_metric([camera], getattr(stats, attr))
            yield family
        swaps = CounterMetricFamily(
            "edge_mnist_edge_model_swaps",
            "Times another model took over between micro-batches",
            labels=["camera"],
        )
        swaps.add_metric([camera], stats.swaps)
        yield swaps
        refused = CounterMetricFamily(
            "edge_mnist_edge_models_refused",
            "Models from the models topic this edge refused",
            labels=["camera"],
        )
        refused.add_metric([camera], stats.refused)
        yield refused
        version = stats.model_version or (stats.serving.current().version if stats.serving else "")
        info = GaugeMetricFamily(
            "edge_mnist_edge_model_info", "The model serving now (its version as a label; value 1)",
            labels=["camera", "version"],
        )  # fmt: skip
        if version:
            info.add_metric([camera, version], 1)
        yield info
        yield from self._outbox(camera)

    def _outbox(self, camera: str) -> Iterator[Metric]:
        sink = self._edge.sink
        box = sink.stats() if sink is not None else None
        if box is None:  # --dry-run prints messages: there is no outbox
            return
        pending = GaugeMetricFamily(
            "edge_mnist_edge_outbox_pending", "Messages in the outbox not yet acknowledged by Kafka",
            labels=["camera"],
        )  # fmt: skip
        pending.add_metric([camera], box.pending)
        yield pending
        dropped = CounterMetricFamily(
            "edge_mnist_edge_outbox_dropped", "Uncertain images the full outbox dropped (kept across restarts)",
            labels=["camera"],
        )  # fmt: skip
        dropped.add_metric([camera], box.dropped)
        yield dropped
