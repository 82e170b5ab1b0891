"""Our runner: wires the stages, source -> enrich -> prepare -> score -> filter -> sink, plus metrics."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from edge_app.outbox import IMAGE, METRICS, Outbox, Record
from edge_app.scoring import score_batches
from edge_app.settings import EdgeSettings
from edge_app.stages import Enricher, ImageSource, MetricsWindow, UncertainFilter
from edgemnist.messages import EdgeConfig, MetricsMessage, OutboxStats, UncertainImage
from edgemnist.model import load_model

__all__ = ["Sink", "StdoutSink", "OutboxSink", "RunStats", "run_edge"]

log = logging.getLogger(__name__)


class Sink(Protocol):
    def put(self, messages: Sequence[UncertainImage | MetricsMessage], key: bytes) -> None: ...

    def stats(self) -> OutboxStats | None: ...


class StdoutSink:
    """--dry-run: one JSON message per line on stdout instead of Kafka."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    def put(self, messages: Sequence[UncertainImage | MetricsMessage], key: bytes) -> None:
        for m in messages:
            self._out.write(m.to_json().decode())
            self._out.write("\n")
        self._out.flush()

    def stats(self) -> OutboxStats | None:
        return None


class OutboxSink:
    """Everything goes into the durable outbox first; the Sender takes it to Kafka."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def put(self, messages: Sequence[UncertainImage | MetricsMessage], key: bytes) -> None:
        self._outbox.put(
            [Record(METRICS if isinstance(m, MetricsMessage) else IMAGE, key, m.to_json()) for m in messages]
        )

    def stats(self) -> OutboxStats | None:
        return self._outbox.stats()


@dataclass
class RunStats:
    """What one run of the edge did, for logs and the demo summary."""

    camera: str = ""
    frames: int = 0
    scored: int = 0
    corrupt: int = 0
    uncertain_sent: int = 0  # handed to the outbox and not dropped by its size bound
    uncertain_dropped: int = 0  # dropped by the outbox's size bound during this run, oldest first
    metrics_sent: int = 0
    model_version: str = ""
    by_class: list[int] = field(default_factory=lambda: [0] * 10)

    def to_dict(self) -> dict[str, object]:
        return {
            "camera": self.camera,
            "frames": self.frames,
            "scored": self.scored,
            "corrupt": self.corrupt,
            "uncertain_sent": self.uncertain_sent,
            "uncertain_dropped": self.uncertain_dropped,
            "metrics_sent": self.metrics_sent,
            "model_version": self.model_version,
        }


def _config(s: EdgeSettings) -> EdgeConfig:
    return EdgeConfig(
        delay=s.delay,
        repeat=s.repeat,
        source=s.source,
        confidence=s.confidence,
        classify_parallel=s.parallelism,
        metrics_duration=s.metrics_duration,
    )


def run_edge(settings: EdgeSettings, sink: Sink, stop: threading.Event | None = None) -> RunStats:
    """Run the pipeline until the source ends (`repeat` passes) or `stop` is set."""
    stop = stop or threading.Event()
    model = load_model(settings.model)  # fail fast, with a clear error, before any worker starts
    stats = RunStats(model_version=model.version)
    log.info("model %s (sha256 %s…) from %s", model.version, model.sha256[:12], model.path or settings.model)
    source = ImageSource(settings.source, settings.repeat, settings.delay, settings.batch_size)
    window = MetricsWindow(settings.metrics_duration, _config(settings), settings.confidence)
    uncertain = UncertainFilter(settings.confidence)
    dropped_before = _dropped(sink)
    with source, Enricher(settings.camera) as enrich:
        stats.camera = enrich.camera
        key = enrich.camera.encode()
        log.info(
            "camera %s: %d frames from %r, repeat %d, delay %gs",
            enrich.camera,
            len(source.frames.frames),
            settings.source,
            settings.repeat,
            settings.delay,
        )
        batches = (enrich(b) for b in itertools.takewhile(lambda _: not stop.is_set(), source()))
        model_path = model.path or settings.model
        for batch, scored in score_batches(batches, model_path, settings.parallelism):
            window.add(scored)
            sent = uncertain(batch, scored)
            sink.put(sent, key)
            stats.frames += len(batch)
            stats.scored += len(scored.index)
            stats.corrupt += len(scored.errors)
            stats.uncertain_sent += len(sent)
            stats.model_version = scored.model_version or stats.model_version
            now = time.time()
            if window.due(now):
                stats.metrics_sent += _close(window, now, batch.camera, batch.run_id, sink, key, stats)
        stats.metrics_sent += _close(window, time.time(), enrich.camera, enrich.run_id, sink, key, stats)
    _count_dropped(stats, sink, dropped_before)
    return stats


def _dropped(sink: Sink) -> int:
    outbox = sink.stats()
    return outbox.dropped if outbox is not None else 0


def _count_dropped(stats: RunStats, sink: Sink, before: int) -> None:
    """Split what went to the outbox into sent and dropped by its bound (the counter is durable)."""
    stats.uncertain_dropped = max(0, _dropped(sink) - before)
    stats.uncertain_sent = max(0, stats.uncertain_sent - stats.uncertain_dropped)


def _close(
    window: MetricsWindow, now: float, camera: str, run_id: str, sink: Sink, key: bytes, stats: RunStats
) -> int:
    msg = window.close(now, camera, run_id, sink.stats(), stats.model_version or None)
    if msg is None:
        return 0
    sink.put([msg], key)
    return 1
