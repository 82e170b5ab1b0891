"""Frames pushed from outside (HTTP) merged into the camera's own stream, answered through Futures.

The camera's source runs in a feeder thread; it and every push put their
micro-batches on one queue that the runner reads, so pushed frames are
prepared, scored, filtered, windowed and sent exactly like the camera's own,
between its batches. The runner scores batches in order and calls this feed
(as a tap) after each, so a FIFO of tickets says which push a batch belongs to.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_app.stages import FrameBatch, Scored
from edgemnist.wire.messages import UncertainImage

__all__ = ["PushResult", "PushFeed", "EdgeStopped"]

log = logging.getLogger(__name__)
_END = object()


class EdgeStopped(RuntimeError):
    """The edge stopped before it scored the pushed frames."""


@dataclass
class PushResult:
    """What the pipeline made of one push: per frame a result (or an error), in push order."""

    camera: str = ""
    model_version: str | None = None
    results: list[dict[str, Any] | None] = field(default_factory=list)
    uncertain_sent: int = 0

    def to_dict(self) -> dict[str, Any]:
        ok = [r for r in self.results if r is not None and "error" not in r]
        return {
            "camera": self.camera,
            "model_version": self.model_version,
            "count": len(ok),
            "errors": len(self.results) - len(ok),
            "uncertain_sent": self.uncertain_sent,
            "results": self.results,
        }


class _Job:
    """One push, possibly split into several micro-batches."""

    def __init__(self, size: int, chunks: int) -> None:
        self.future: Future[PushResult] = Future()
        self.result = PushResult(results=[None] * size)
        self.left = chunks

    def add(self, offset: int, batch: FrameBatch, scored: Scored, sent: Sequence[UncertainImage]) -> None:
        res = self.result
        res.camera, res.model_version = batch.camera, scored.model_version or res.model_version
        res.uncertain_sent += len(sent)
        for pos, why in scored.errors:
            res.results[offset + pos] = {"error": why, "count": batch.first_count + pos}
        for j, pos in enumerate(scored.index.tolist()):
            count = batch.first_count + pos
            item: dict[str, Any] = {
                "id": f"{batch.camera}/{batch.run_id}/{count}",
                "count": count,
                "result_class": int(scored.result_class[j]),
                "result_probability": float(scored.result_probability[j]),
                "predictions": scored.probabilities[j].tolist(),
            }
            if batch.labels is not None:
                item["true_class"] = int(batch.labels[pos])
            res.results[offset + pos] = item
        self.left -= 1
        if self.left == 0 and not self.future.done():
            self.future.set_result(res)


class PushFeed:
    """The queue the runner reads: the camera's batches and pushed ones, in arrival order."""

    def __init__(self, batch_size: int = 256, camera_ahead: int = 4, idle: float = 0.05) -> None:
        self._batch_size = batch_size
        self._idle = idle
        self._queue: queue.Queue[Any] = queue.Queue()
        self._camera_slots = threading.Semaphore(camera_ahead)
        self._tickets: deque[tuple[_Job, int] | None] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self.pushed = 0

    def submit(self, frames: Sequence[bytes], labels: Sequence[int] | None = None) -> Future[PushResult]:
        """Queue frames for scoring; the Future gets their results once the pipeline has handled them."""
        n = len(frames)
        chunks = max(1, -(-n // self._batch_size))
        job = _Job(n, chunks)
        now = time.time()
        with self._lock:
            if self._closed:
                job.future.set_exception(EdgeStopped("the edge has stopped; nothing was scored"))
                return job.future
            for start in range(0, max(n, 1), self._batch_size):
                part = slice(start, start + self._batch_size)
                lab = None if labels is None else np.asarray(labels[part], dtype=np.int64)
                batch = FrameBatch(tuple(frames[part]), lab, np.full(len(frames[part]), now))
                self._queue.put((batch, (job, start)))
            self.pushed += n
        return job.future

    def merge(self, source: Iterator[FrameBatch], stop: threading.Event) -> Iterator[FrameBatch]:
        """The camera's batches (from a feeder thread) and pushed ones; runs on after the camera ends, until `stop`."""
        feeder = threading.Thread(target=self._feed, args=(source, stop), name="camera-feed", daemon=True)
        feeder.start()
        while not stop.is_set():
            try:
                item = self._queue.get(timeout=self._idle)
            except queue.Empty:
                if any(t is not None for t in self._tickets):
                    # parallel scoring holds batches until more arrive: push the pushed ones through
                    self._tickets.append(None)
                    yield FrameBatch((), None, np.zeros(0))
                continue
            if item is _END:
                continue
            batch, ticket = item
            if ticket is None:
                self._camera_slots.release()
            self._tickets.append(ticket)
            yield batch

    def _feed(self, source: Iterator[FrameBatch], stop: threading.Event) -> None:
        try:
            for batch in source:
                while not self._camera_slots.acquire(timeout=0.2):
                    if stop.is_set():
                        return
                self._queue.put((batch, None))
                if stop.is_set():
                    return
        except Exception as exc:  # the source closed under us at shutdown, or failed: the pushes go on
            if not stop.is_set():
                log.error("camera source ended with an error: %s", exc)
        self._queue.put(_END)
        log.info("camera source finished; still serving pushed frames until stopped")

    def __call__(self, batch: FrameBatch, scored: Scored, sent: Sequence[UncertainImage]) -> None:
        """Runner tap: the batch at the head of the FIFO was scored; answer its push if it was one."""
        ticket = self._tickets.popleft() if self._tickets else None
        if ticket is not None:
            job, offset = ticket
            job.add(offset, batch, scored, sent)

    def finish(self) -> None:
        self.close()

    def close(self) -> None:
        """Fail every push not yet answered, and any later one."""
        with self._lock:
            self._closed = True
            pending = [t for t in self._tickets if t is not None]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _END and item[1] is not None:
                    pending.append(item[1])
        for job, _ in pending:
            if not job.future.done():
                job.future.set_exception(EdgeStopped("the edge stopped before scoring these frames"))
