"""Scoring micro-batches in this process or in N worker processes, results in order.

Each batch is scored by the model that is current when it is submitted
(`current`, fed by the models-topic watcher): in this process the Scorer
swaps the model object; a worker process gets the model's file path with the
batch and reloads (verified again) when it changes. So every worker swaps, a
batch is never split between two models, and results still come back in order. A shadow
model (`shadow`) travels the same way: the Scorer holds it, a worker gets its path.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from edge_app.stages import FrameBatch, Scored, Scorer
from edgemnist.errors import ModelError
from edgemnist.model import Model, load_model

__all__ = ["score_batches"]

_worker: Scorer | None = None
_worker_path: str | None = None
_worker_shadow: str = ""  # the shadow model's path in this worker; "" = none


def _keep_freed_memory() -> None:
    """Keep each batch's freed buffers in the heap; otherwise every batch re-faults ~6 MB of fresh pages.

    Measured in bench/edge.py: 1,500 page faults per batch down to 10, +18-20% images per core-second.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD


def _init_worker(model_path: str) -> None:
    global _worker, _worker_path
    _keep_freed_memory()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pass
    _worker = Scorer(model_path).__enter__()
    _worker_path = model_path


def _score(frames: tuple[bytes, ...], model_path: str | None = None, shadow_path: str = "") -> Scored:
    global _worker_path, _worker_shadow
    assert _worker is not None, "worker not initialised"
    if shadow_path != _worker_shadow:
        try:
            _worker.shadow_swap(load_model(shadow_path) if shadow_path else None)
        except ModelError:  # gone or changed since the watcher verified it: no shadow scoring
            _worker.shadow_swap(None)
        _worker_shadow = shadow_path
    if model_path is not None and model_path != _worker_path:
        try:
            _worker.swap(load_model(model_path))
        except ModelError:  # gone or changed since the watcher verified it: the old model scores on
            pass
        _worker_path = model_path  # try each path once; Scored.model_version says which model scored
    return _worker(frames)


def score_batches(
    batches: Iterable[FrameBatch],
    model_path: Path,
    parallelism: int = 1,
    current: Callable[[], Model] | None = None,
    shadow: Callable[[], Model | None] | None = None,
) -> Iterator[tuple[FrameBatch, Scored]]:
    """Yield (batch, scored) in input order; with parallelism N, N processes score, 2N batches in flight.

    Args:
        batches: the enriched micro-batches.
        model_path: the model every scorer starts with.
        parallelism: worker processes (1 = score in this process).
        current: the model to score the next batch with, asked before each batch (hot swap);
            None keeps the first model. Its ``path`` must be set for parallelism > 1.
        shadow: the model to score beside it, asked before each batch; None (or returning None):
            no shadow scoring. Its ``path`` must be set for parallelism > 1.
    """
    if parallelism <= 1:
        with Scorer(model_path) as scorer:
            for batch in batches:
                if current is not None:
                    model = current()
                    if model is not scorer.model:
                        scorer.swap(model)
                if shadow is not None:
                    scorer.shadow_swap(shadow())
                yield batch, scorer(batch.frames)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        parallelism, mp_context=ctx, initializer=_init_worker, initargs=(str(model_path),)
    ) as pool:
        inflight: deque[tuple[FrameBatch, Future[Scored]]] = deque()
        for batch in batches:
            now = current() if current is not None else None
            path = None if now is None or now.path is None else str(now.path)
            beside = shadow() if shadow is not None else None
            shadow_path = "" if beside is None or beside.path is None else str(beside.path)
            inflight.append((batch, pool.submit(_score, batch.frames, path, shadow_path)))
            while len(inflight) >= 2 * parallelism or (inflight and inflight[0][1].done()):
                done, fut = inflight.popleft()
                yield done, fut.result()
        while inflight:
            done, fut = inflight.popleft()
            yield done, fut.result()
