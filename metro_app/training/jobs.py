"""Retrain jobs in a background thread of the hub: one at a time, with progress and result.

POST /models/retrain and a control-topic command both start a job here, so
two triggers never train at once; the second is told which job is running.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from metro_app.store.rows import iso
from metro_app.training.retrain import Progress, RetrainResult

__all__ = ["RetrainJobs"]

log = logging.getLogger(__name__)
_KEEP = 50


class RetrainJobs:
    """Start retrain jobs (one at a time) and report them by id.

    Args:
        run: runs one retrain, reporting progress through the callback it is given.
    """

    def __init__(self, run: Callable[[Progress], RetrainResult]) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._running: str | None = None
        self._thread: threading.Thread | None = None

    def start(self, trigger: str) -> tuple[dict[str, Any], bool]:
        """(job, True) for a new job, or (the running job, False) when one is running already."""
        with self._lock:
            if self._running is not None:
                return dict(self._jobs[self._running]), False
            job_id = f"r-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
            self._jobs[job_id] = {
                "id": job_id,
                "trigger": trigger,
                "state": "running",
                "stage": "queued",
                "progress": 0.0,
                "started": iso(time.time()),
                "finished": None,
                "result": None,
                "error": None,
            }
            while len(self._jobs) > _KEEP:
                self._jobs.popitem(last=False)
            self._running = job_id
            self._thread = threading.Thread(
                target=self._work, args=(job_id,), name=f"retrain-{job_id}", daemon=True
            )
            self._thread.start()
            return dict(self._jobs[job_id]), True

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return dict(job) if job is not None else None

    def running(self) -> str | None:
        with self._lock:
            return self._running

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            self._jobs[job_id].update(changes)

    def _work(self, job_id: str) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            self._update(job_id, stage=stage, progress=round(done / total, 3) if total else 1.0)

        try:
            result = self._run(progress)
        except Exception as exc:  # one failed retrain must not take the hub down; the job reports it
            log.exception("retrain job %s failed", job_id)
            changes: dict[str, Any] = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        else:
            changes = {"state": "done", "result": result.to_dict(), "progress": 1.0, "stage": "done"}
        with self._lock:
            self._jobs[job_id].update(changes, finished=iso(time.time()))
            self._running = None
