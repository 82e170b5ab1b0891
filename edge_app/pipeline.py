"""The edge pipeline, defined once: the stages our runner and the streamsx topology both wire.

    ImageSource -> Enrich -> Score (parallel) -> UncertainFilter --> Outbox -> Kafka
                                             \\-> MetricsWindow ---/

`edge_stages` builds the stage objects from the settings; `EdgeStages.specs()` lists them in
order with their streamsx operator kind, which `edge_app.topology` turns into a Topology and a
test runs in-process. Every stage keeps only picklable configuration until `__enter__`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from edge_app.settings import EdgeSettings
from edge_app.sinks import OutboxSink, message_key
from edge_app.stages import (
    SHADOW_CAP,
    Enricher,
    FrameBatch,
    ImageSource,
    MetricsWindow,
    Scored,
    Scorer,
    ShadowCap,
    UncertainFilter,
    UploadCap,
)
from edgemnist.wire.messages import EdgeConfig, MetricsMessage, ModelRefusal, OutboxStats, UncertainImage

__all__ = [
    "StageSpec",
    "EdgeStages",
    "edge_stages",
    "edge_config",
    "ScoreStage",
    "UncertainStage",
    "WindowReport",
    "WindowStage",
    "SendStage",
]

log = logging.getLogger(__name__)

Kind = Literal["source", "map", "flat_map", "for_each"]


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One operator: its name, its streamsx kind, the stage object, where its tuples come from."""

    name: str
    kind: Kind
    stage: Any
    inputs: tuple[str, ...] = ()  # upstream operators (several: their union); () = the one before
    parallel: int = 1  # channels of a parallel region around this operator


def edge_config(s: EdgeSettings) -> EdgeConfig:
    """The reference's `config` block of every metrics message."""
    return EdgeConfig(
        delay=s.delay,
        repeat=s.repeat,
        source=s.source,
        confidence=s.confidence,
        classify_parallel=s.parallelism,
        metrics_duration=s.metrics_duration,
    )


class ScoreStage:
    """Map: prepare and score a FrameBatch, keeping the batch beside its scores."""

    def __init__(self, model_path: str) -> None:
        self.model_path = model_path
        self._scorer: Scorer | None = None

    def __enter__(self) -> ScoreStage:
        self._scorer = Scorer(self.model_path).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._scorer = None

    def __call__(self, batch: FrameBatch) -> tuple[FrameBatch, Scored]:
        if self._scorer is None:
            raise RuntimeError("ScoreStage used outside its `with` block")
        return batch, self._scorer(batch.frames)


class UncertainStage:
    """FlatMap: the batch's uncertain images that go home, at most the upload cap's share.

    With a shadow model, the frames where it disagrees with the serving model go home too
    (carrying both predictions), at most `shadow_cap` per metrics window.
    """

    def __init__(self, confidence: float, per_minute: int = 0, shadow_cap: int = SHADOW_CAP) -> None:
        self._filter = UncertainFilter(confidence)
        self.cap = UploadCap(per_minute)
        self.shadow_cap = ShadowCap(shadow_cap)
        self.held_back = 0  # over the whole run (the cap's own count is per metrics window)

    def __call__(self, item: tuple[FrameBatch, Scored]) -> list[UncertainImage]:
        picked = self._filter(*item)
        sent = self.cap(picked)
        self.held_back += len(picked) - len(sent)
        if item[1].shadow_probabilities is not None:
            going = {m.count for m in picked}  # an uncertain frame already carries both predictions
            extra = [m for m in self._filter.disagreements(*item) if m.count not in going]
            sent = sent + self.shadow_cap(extra)
        return sent


class WindowReport(Protocol):
    """What the process around a window adds to its messages (outbox, refused models, held back)."""

    def outbox(self) -> OutboxStats | None: ...

    def refused(self) -> tuple[ModelRefusal, ...]: ...

    def held_back(self) -> int | None: ...

    def shadow_held_back(self) -> int: ...

    def reported(self, refused: int) -> None: ...


class WindowStage:
    """FlatMap: one metrics message per tumbling window, and one more whenever the model changes.

    As a streamsx operator it also closes the last window once it has counted every frame of a
    finite source (the source marks its last batch; batches may arrive out of order from a
    parallel region). Our runner calls `add`, `close_if_due` and `close` itself instead.
    `report` is set by a runner that owns the outbox and the model watcher; None in streamsx.
    """

    def __init__(self, duration: float, config: EdgeConfig, confidence: float) -> None:
        self._args = (duration, config, confidence)
        self._window: MetricsWindow | None = None
        self.report: WindowReport | None = None
        self.version: str | None = None
        self._camera = self._run_id = ""
        self._frames = 0
        self._end: int | None = None

    @property
    def window(self) -> MetricsWindow:
        if self._window is None:  # made on first use, so the window starts when tuples flow
            self._window = MetricsWindow(*self._args)
        return self._window

    def add(self, batch: FrameBatch, scored: Scored, now: float) -> list[MetricsMessage]:
        """Count a scored batch; a model change first closes the window the old model filled."""
        out = self.close(now) if scored.model_version != self.version and self.window.images else []
        self.version = scored.model_version
        self._camera, self._run_id = batch.camera, batch.run_id
        self.window.add(scored, batch.labels)
        self._frames += len(batch)
        if batch.last:
            self._end = batch.first_count + len(batch)
        return out

    def close_if_due(self, now: float) -> list[MetricsMessage]:
        return self.close(now) if self.window.due(now) else []

    def close(self, now: float) -> list[MetricsMessage]:
        """End the window at `now`: its message, or none when it saw no image."""
        r = self.report
        refused = r.refused() if r else ()
        held = r.held_back() if r else None
        shadow_held = r.shadow_held_back() if r else 0
        outbox = r.outbox() if r else None
        msg = self.window.close(
            now, self._camera, self._run_id, outbox, self.version, refused, held, shadow_held
        )
        if msg is None:
            return []
        if r:
            r.reported(len(refused))
        return [msg]

    def __call__(self, item: tuple[FrameBatch, Scored]) -> list[MetricsMessage]:
        now = time.time()
        batch, scored = item
        out = self.add(batch, scored, now)
        if self._end is not None and self._frames >= self._end:
            self._end = None
            return out + self.close(now)
        return out + self.close_if_due(now)


class SendStage:
    """ForEach: each message into the durable outbox, which a Sender drains to Kafka (acks=all).

    Kafka is resolved when the operator starts (flags given at build time, else the
    `EDGE_MNIST_*` env of the running job), so no secret is written into a build archive.
    On exit it waits up to `drain_timeout` seconds for Kafka to acknowledge what is left;
    what is not acknowledged stays in the outbox for the next run.
    """

    def __init__(
        self,
        outbox_path: str,
        max_bytes: int,
        topic: str,
        bootstrap_servers: str | None = None,
        credentials: str | None = None,
        drain_timeout: float = 300.0,
    ) -> None:
        self.outbox_path, self._max_bytes, self.topic = outbox_path, max_bytes, topic
        self._servers, self._credentials = bootstrap_servers, credentials
        self._drain_timeout = drain_timeout
        self._outbox: Any = None
        self._sender: Any = None

    def __enter__(self) -> SendStage:
        from edge_app.outbox import Outbox
        from edge_app.sender import Sender
        from edgemnist.kafka import EventProducer
        from edgemnist.kafka.settings import resolve

        kafka = resolve(bootstrap_servers=self._servers, credentials=self._credentials)
        self._outbox = Outbox(self.outbox_path, self._max_bytes).__enter__()
        self._sender = Sender(self._outbox, self.topic, lambda: EventProducer(kafka)).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sender is not None:
            if not self._sender.drain(self._drain_timeout):
                log.error("%d messages stay in the outbox %s", self._outbox.pending, self.outbox_path)
            self._sender.stop()
            self._sender = None
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    def __call__(self, msg: UncertainImage | MetricsMessage) -> None:
        if self._outbox is None:
            raise RuntimeError("SendStage used outside its `with` block")
        OutboxSink(self._outbox).put([msg], message_key(msg))


@dataclass(frozen=True, slots=True)
class EdgeStages:
    """The edge's stage objects, in pipeline order."""

    source: ImageSource
    enrich: Enricher
    score: ScoreStage
    uncertain: UncertainStage
    window: WindowStage
    send: SendStage
    parallelism: int = 1

    def specs(self) -> tuple[StageSpec, ...]:
        """The operators of the streamsx topology, in order."""
        return (
            StageSpec("ImageSource", "source", self.source),
            StageSpec("Enrich", "map", self.enrich),
            StageSpec("Score", "map", self.score, parallel=self.parallelism),
            StageSpec("UncertainFilter", "flat_map", self.uncertain, ("Score",)),
            StageSpec("MetricsWindow", "flat_map", self.window, ("Score",)),
            StageSpec("Outbox", "for_each", self.send, ("UncertainFilter", "MetricsWindow")),
        )


def edge_stages(
    settings: EdgeSettings,
    model_path: Path | None = None,
    *,
    bootstrap_servers: str | None = None,
    credentials: str | None = None,
) -> EdgeStages:
    """The one definition of the edge's stages, configured from `settings`.

    Args:
        settings: the edge's settings.
        model_path: the model to start with (default `settings.model`; our runner passes the one
            kept from the models topic, when there is one).
        bootstrap_servers: Kafka for the sending stage; None resolves it from the env when it starts.
        credentials: a credentials JSON path for the sending stage, resolved when it starts.
    """
    s = settings
    return EdgeStages(
        source=ImageSource(s.source, s.repeat, s.delay, s.batch_size, distort=s.distort),
        enrich=Enricher(s.camera),
        score=ScoreStage(str(model_path or s.model)),
        uncertain=UncertainStage(s.confidence, s.max_uncertain_per_minute, s.shadow_cap),
        window=WindowStage(s.metrics_duration, edge_config(s), s.confidence),
        send=SendStage(
            str(s.outbox_path),
            int(s.outbox_max_mb * 2**20),
            s.topic,
            bootstrap_servers,
            credentials,
            s.drain_timeout,
        ),
        parallelism=s.parallelism,
    )
