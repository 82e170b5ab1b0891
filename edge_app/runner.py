"""Our runner: the stages of `edge_app.pipeline` in a plain Python process, plus model updates and taps.

source -> enrich -> score (N worker processes) -> uncertain filter + metrics window -> sink
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge_app.models import ModelWatcher, Reader, ServingModel
from edge_app.pipeline import EdgeStages, edge_stages
from edge_app.saved_models import SavedModels, initial_model, initial_shadow
from edge_app.scoring import score_batches
from edge_app.settings import EdgeSettings
from edge_app.sinks import OutboxSink, Sink, StdoutSink
from edge_app.stages import FrameBatch, Scored, ShadowCap, UploadCap
from edge_app.trust import ModelTrust
from edgemnist.prep import SHAPE, prepare_frames
from edgemnist.wire.messages import MetricsMessage, ModelRefusal, OutboxStats, UncertainImage

__all__ = ["Sink", "Tap", "Feed", "StdoutSink", "OutboxSink", "RunStats", "run_edge"]

log = logging.getLogger(__name__)


class Tap(Protocol):
    """Sees every scored batch after it was sent (results topic, HTTP answers); `finish` before the last window."""

    def __call__(self, batch: FrameBatch, scored: Scored, sent: Sequence[UncertainImage]) -> None: ...

    def finish(self) -> None: ...


class Feed(Protocol):
    """Merges frames from elsewhere (HTTP pushes) into the camera's own batches."""

    def merge(self, source: Iterator[FrameBatch], stop: threading.Event) -> Iterator[FrameBatch]: ...


@dataclass
class RunStats:
    """What one run of the edge did, for logs and the demo summary."""

    camera: str = ""
    frames: int = 0
    scored: int = 0
    corrupt: int = 0
    uncertain_sent: int = 0  # handed to the outbox and not dropped by its size bound
    uncertain_dropped: int = 0  # dropped by the outbox's size bound during this run, oldest first
    uncertain_held_back: int = 0  # kept home by --max-uncertain-per-minute
    metrics_sent: int = 0
    model_version: str = ""
    model_versions: list[str] = field(default_factory=list)  # every version that served, in order
    models_refused: list[str] = field(default_factory=list)
    labelled: int = 0
    correct: int = 0
    serving: ServingModel | None = field(default=None, repr=False, compare=False)  # while it runs

    @property
    def swaps(self) -> int:
        """How often another model took over while this run scored (a rollback counts too)."""
        return max(0, len(self.model_versions) - 1)

    @property
    def refused(self) -> int:
        """Models refused since the run started (as they happen, not only once the run ends)."""
        return self.serving.refused_total if self.serving is not None else len(self.models_refused)

    def served(self, version: str | None) -> None:
        if version and (not self.model_versions or self.model_versions[-1] != version):
            self.model_versions.append(version)
        self.model_version = version or self.model_version

    def to_dict(self) -> dict[str, object]:
        return {
            "camera": self.camera,
            "frames": self.frames,
            "scored": self.scored,
            "corrupt": self.corrupt,
            "uncertain_sent": self.uncertain_sent,
            "uncertain_dropped": self.uncertain_dropped,
            "uncertain_held_back": self.uncertain_held_back,
            "metrics_sent": self.metrics_sent,
            "model_version": self.model_version,
            "model_versions": list(self.model_versions),
            "models_refused": list(self.models_refused),
            "labelled": self.labelled,
            "correct": self.correct,
        }


def _probe_images(frames: tuple[bytes, ...], n: int = 64) -> np.ndarray:
    """A few of the camera's own frames, prepared, plus a blank one: what a new model must score."""
    images = prepare_frames(frames[:n]).images
    return np.concatenate([images, np.zeros((1, *SHAPE), dtype=np.uint8)])


class _Report:
    """What a window's message says about this process: the outbox, refused models, the upload cap."""

    def __init__(self, sink: Sink, serving: ServingModel, cap: UploadCap, shadow_cap: ShadowCap) -> None:
        self._sink, self._serving, self._cap, self._shadow_cap = sink, serving, cap, shadow_cap

    def outbox(self) -> OutboxStats | None:
        return self._sink.stats()

    def refused(self) -> tuple[ModelRefusal, ...]:
        return self._serving.pending_refusals()

    def held_back(self) -> int | None:
        return self._cap.held_back  # per window: what the cap kept home since the last message

    def shadow_held_back(self) -> int:
        return self._shadow_cap.take_held_back()  # the next window starts with room again

    def reported(self, refused: int) -> None:
        self._cap.take_held_back()
        self._serving.reported(refused)


def run_edge(
    settings: EdgeSettings,
    sink: Sink,
    stop: threading.Event | None = None,
    models: Callable[[], Reader] | None = None,
    *,
    feed: Feed | None = None,
    taps: Sequence[Tap] = (),
    stats: RunStats | None = None,
) -> RunStats:
    """Run the pipeline until the source ends (`repeat` passes; with a `feed`, until `stop`) or `stop` is set.

    Args:
        settings: the edge's settings.
        sink: where messages go (the outbox, or stdout for --dry-run).
        stop: set to finish the current batch and the metrics window, then return.
        models: opens a reader of the models topic; None serves the starting model throughout.
        feed: frames pushed from elsewhere (HTTP), merged into the camera's own.
        taps: see every scored batch after it was sent (results topic, HTTP answers).
        stats: filled as the run goes (Prometheus reads it meanwhile); a new one when None.
    """
    stop = stop or threading.Event()
    saved_models = SavedModels(settings.models_dir)
    # fail fast, with a clear error, before any worker starts
    serving = ServingModel(initial_model(settings.model, saved_models, follow=bool(settings.models_topic)))
    if settings.models_topic:  # a shadow model comes from the topic; without it, none scores
        serving.offer_shadow(initial_shadow(saved_models))
    model = serving.current()
    stats = stats if stats is not None else RunStats()
    stats.serving = serving
    log.info("model %s (sha256 %s…) from %s", model.version, model.sha256[:12], model.path or settings.model)
    model_path = model.path or settings.model
    stages = edge_stages(settings, model_path)  # the sink stands in for stages.send
    source, window = stages.source, stages.window
    window.report = _Report(sink, serving, stages.uncertain.cap, stages.uncertain.shadow_cap)
    dropped_before = _dropped(sink)
    with source, stages.enrich as enrich:
        stats.camera = enrich.camera
        _log_camera(settings, enrich.camera, len(source.frames.frames))
        watcher = None
        if models is not None:
            probe = _probe_images(source.frames.frames)
            trust = ModelTrust.from_file(settings.trusted_keys, allow_unsigned=settings.allow_unsigned_models)
            trust.describe()
            watcher = ModelWatcher(models, enrich.camera, serving, saved_models, probe, trust=trust).start()
        try:
            frames = source() if feed is None else feed.merge(source(), stop)
            batches = (enrich(b) for b in itertools.takewhile(lambda _: not stop.is_set(), frames))
            scored = score_batches(batches, model_path, stages.parallelism, serving.current, serving.shadow)
            _Batches(stages, sink, enrich.camera.encode(), taps, stats).run(scored)
        finally:
            if watcher is not None:
                watcher.stop()
                stats.models_refused = [r.version for r in watcher.refused]
    _count_dropped(stats, sink, dropped_before)
    return stats


def _log_camera(settings: EdgeSettings, camera: str, frames: int) -> None:
    log.info(
        "camera %s: %d frames from %r%s, repeat %d, delay %gs",
        camera,
        frames,
        settings.source,
        f" distorted by {settings.distort}" if settings.distort else "",
        settings.repeat,
        settings.delay,
    )


class _Batches:
    """After scoring: each batch's uncertain images and metrics windows to the sink, then to the taps."""

    def __init__(
        self, stages: EdgeStages, sink: Sink, key: bytes, taps: Sequence[Tap], stats: RunStats
    ) -> None:
        self._uncertain, self._window = stages.uncertain, stages.window
        self._sink, self._key, self._taps, self._stats = sink, key, taps, stats

    def run(self, scored: Iterable[tuple[FrameBatch, Scored]]) -> None:
        """Handle every scored batch, then let the taps finish and close the last window."""
        for batch, result in scored:
            self.handle(batch, result)
        for tap in self._taps:
            tap.finish()
        self._stats.metrics_sent += _put(self._sink, self._window.close(time.time()), self._key)

    def handle(self, batch: FrameBatch, scored: Scored) -> None:
        stats, sink, key = self._stats, self._sink, self._key
        if scored.model_version != stats.model_version and stats.model_versions:
            log.info("from frame %d on, model %s serves (was %s)", batch.first_count,
                     scored.model_version, stats.model_version)  # fmt: skip
        stats.metrics_sent += _put(sink, self._window.add(batch, scored, time.time()), key)
        stats.served(scored.model_version)
        held_before = self._uncertain.held_back
        sent = self._uncertain((batch, scored))
        stats.uncertain_held_back += self._uncertain.held_back - held_before
        sink.put(sent, key)
        for tap in self._taps:
            tap(batch, scored, sent)
        _count(stats, batch, scored, sent)
        stats.metrics_sent += _put(sink, self._window.close_if_due(time.time()), key)


def _count(stats: RunStats, batch: FrameBatch, scored: Scored, sent: Sequence[UncertainImage]) -> None:
    stats.frames += len(batch)
    stats.scored += len(scored.index)
    stats.corrupt += len(scored.errors)
    stats.uncertain_sent += len(sent)
    if batch.labels is not None and len(scored.index):
        stats.labelled += len(scored.index)
        stats.correct += int((scored.result_class == batch.labels[scored.index]).sum())


def _put(sink: Sink, metrics: Sequence[MetricsMessage], key: bytes) -> int:
    if metrics:
        sink.put(metrics, key)
    return len(metrics)


def _dropped(sink: Sink) -> int:
    outbox = sink.stats()
    return outbox.dropped if outbox is not None else 0


def _count_dropped(stats: RunStats, sink: Sink, before: int) -> None:
    """Split what went to the outbox into sent and dropped by its bound (the counter is durable)."""
    stats.uncertain_dropped = max(0, _dropped(sink) - before)
    stats.uncertain_sent = max(0, stats.uncertain_sent - stats.uncertain_dropped)
