"""The per-image results topic: one compact record per scored image, through the durable outbox.

Results take the same path as everything else the edge sends (SQLite outbox,
deleted only once Kafka acknowledged them, resent after an outage or a
restart), so none is lost; they are never dropped to make room, like metrics.
The Sender routes them to their own topic and counts acknowledgements and
failed sends; every metrics message reports `results: {acked, failed, pending}`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence

from edge_app.outbox import RESULT, Outbox, Record
from edge_app.sender import Sender
from edge_app.stages import FrameBatch, Scored
from edgemnist.wire.messages import MetricsMessage, OutboxStats, ResultStats, UncertainImage, utc_timestamp
from edgemnist.wire.serving import ImageResult

__all__ = ["ResultWriter", "ResultsSink", "image_results"]

log = logging.getLogger(__name__)


def image_results(batch: FrameBatch, scored: Scored) -> list[ImageResult]:
    """One result per scored image of a batch, with the same id the image would have on the events topic."""
    out = []
    for j, pos in enumerate(scored.index.tolist()):
        count = batch.first_count + pos
        out.append(
            ImageResult(
                id=f"{batch.camera}/{batch.run_id}/{count}",
                camera=batch.camera,
                count=count,
                timestamp=utc_timestamp(float(batch.emitted[pos])),
                result_class=int(scored.result_class[j]),
                result_probability=float(scored.result_probability[j]),
                model_version=scored.model_version,
                true_class=None if batch.labels is None else int(batch.labels[pos]),
            )
        )
    return out


class ResultWriter:
    """A runner tap: puts each scored batch's results in the outbox (one transaction per batch)."""

    def __init__(
        self,
        outbox: Outbox,
        sender: Sender,
        stop: threading.Event | None = None,
        drain_timeout: float = 300.0,
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._stop = stop or threading.Event()
        self._drain_timeout = drain_timeout
        self.written = 0

    def __call__(self, batch: FrameBatch, scored: Scored, sent: Sequence[UncertainImage] = ()) -> None:
        results = image_results(batch, scored)
        self._outbox.put([Record(RESULT, batch.camera.encode(), r.to_json()) for r in results])
        self.written += len(results)

    def finish(self) -> None:
        """At the end of a run, wait for Kafka to acknowledge the results, so the last metrics say so."""
        deadline = time.monotonic() + self._drain_timeout
        while self._outbox.pending_of(RESULT) and time.monotonic() < deadline and not self._stop.is_set():
            self._stop.wait(0.05)

    def stats(self) -> ResultStats:
        return ResultStats(
            acked=self._sender.acked[RESULT],
            failed=self._sender.failed[RESULT],
            pending=self._outbox.pending_of(RESULT),
        )


class ResultsSink:
    """Wraps the edge's sink: every metrics message it passes on carries the results counts."""

    def __init__(self, inner: object, writer: ResultWriter, log_every: float = 10.0) -> None:
        self._inner = inner
        self._writer = writer
        self._log_every = log_every
        self._logged = 0.0

    def put(self, messages: Sequence[UncertainImage | MetricsMessage], key: bytes) -> None:
        if any(isinstance(m, MetricsMessage) for m in messages):
            stats = self._writer.stats()
            messages = [
                dataclasses.replace(m, results=stats) if isinstance(m, MetricsMessage) else m
                for m in messages
            ]
            if time.monotonic() - self._logged >= self._log_every:
                self._logged = time.monotonic()
                log.info(
                    "results: %d acked, %d failed sends, %d pending", stats.acked, stats.failed, stats.pending
                )
        self._inner.put(messages, key)  # type: ignore[attr-defined]

    def stats(self) -> OutboxStats | None:
        return self._inner.stats()  # type: ignore[attr-defined, no-any-return]
