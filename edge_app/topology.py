"""The edge as a streamsx Topology, for users who own an IBM Streams / Cloud Pak for Data instance.

The same stage objects as our runner, wired as streamsx operators:
ImageSource -> Enrich -> (parallel) Score -> UncertainFilter -> Outbox
                                          \\-> MetricsWindow  -> Outbox
`edge-app build --target streams-archive --out DIR` writes the build archive.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge_app.outbox import Outbox
from edge_app.runner import OutboxSink
from edge_app.settings import EdgeSettings
from edge_app.stages import Enricher, FrameBatch, ImageSource, MetricsWindow, Scored, Scorer, UncertainFilter
from edgemnist.messages import EdgeConfig, MetricsMessage, UncertainImage

__all__ = ["build_topology", "build_archive", "OPERATORS"]

OPERATORS = ("ImageSource", "Enrich", "Score", "UncertainFilter", "MetricsWindow", "Outbox")


class ScoreStage:
    """Scorer over a FrameBatch, keeping the batch beside its scores."""

    def __init__(self, model_path: str) -> None:
        self._model_path = model_path
        self._scorer: Scorer | None = None

    def __enter__(self) -> ScoreStage:
        self._scorer = Scorer(self._model_path).__enter__()
        return self

    def __exit__(self, *exc: object) -> bool:
        self._scorer = None
        return False

    def __call__(self, batch: FrameBatch) -> tuple[FrameBatch, Scored]:
        assert self._scorer is not None
        return batch, self._scorer(batch.frames)


class FilterStage:
    def __init__(self, confidence: float) -> None:
        self._filter = UncertainFilter(confidence)

    def __call__(self, item: tuple[FrameBatch, Scored]) -> list[UncertainImage]:
        return self._filter(*item)


class WindowStage:
    """Emits a metrics message when the tumbling window is due."""

    def __init__(self, duration: float, config: EdgeConfig, confidence: float) -> None:
        self._args = (duration, config, confidence)
        self._window: MetricsWindow | None = None

    def __call__(self, item: tuple[FrameBatch, Scored]) -> list[MetricsMessage]:
        if self._window is None:
            self._window = MetricsWindow(*self._args)
        batch, scored = item
        self._window.add(scored, batch.labels)
        now = time.time()
        if not self._window.due(now):
            return []
        msg = self._window.close(now, batch.camera, batch.run_id, None, scored.model_version)
        return [msg] if msg else []


class OutboxStage:
    """Writes each message to the durable outbox; a Sender (kafka) drains it, as in our runner."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self._path, self._max_bytes = path, max_bytes
        self._box: Outbox | None = None

    def __enter__(self) -> OutboxStage:
        self._box = Outbox(self._path, self._max_bytes).__enter__()
        return self

    def __exit__(self, *exc: object) -> bool:
        if self._box is not None:
            self._box.close()
        return False

    def __call__(self, msg: UncertainImage | MetricsMessage) -> None:
        assert self._box is not None
        OutboxSink(self._box).put(
            [msg],
            msg.camera.encode()
            if isinstance(msg, UncertainImage)
            else next(iter(msg.camera_metrics)).encode(),
        )


def build_topology(settings: EdgeSettings, name: str = "EdgeCameraClassifier") -> Any:
    """The streamsx Topology of one edge camera."""
    from streamsx.topology.topology import Topology

    from edge_app.runner import _config

    topo = Topology(name)
    batches = topo.source(
        ImageSource(
            settings.source, settings.repeat, settings.delay, settings.batch_size, distort=settings.distort
        ),
        name="ImageSource",
    )
    enriched = batches.map(Enricher(settings.camera), name="Enrich")
    if settings.parallelism > 1:
        enriched = enriched.parallel(settings.parallelism)
    scored = enriched.map(ScoreStage(str(settings.model)), name="Score")
    if settings.parallelism > 1:
        scored = scored.end_parallel()
    uncertain = scored.flat_map(FilterStage(settings.confidence), name="UncertainFilter")
    metrics = scored.flat_map(
        WindowStage(settings.metrics_duration, _config(settings), settings.confidence), name="MetricsWindow"
    )
    outbox = OutboxStage(str(settings.outbox_path), int(settings.outbox_max_mb * 2**20))
    uncertain.union({metrics}).for_each(outbox, name="Outbox")
    return topo


def build_archive(topo: Any, out_dir: Path) -> Path:
    """Build a Streams build archive (streamsx BUILD_ARCHIVE context; needs Java) into `out_dir`."""
    from edgemnist.streams import build_archive as _build

    return _build(topo, out_dir)
