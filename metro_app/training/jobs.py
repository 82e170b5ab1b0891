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

from metro_app.store.requests import RetrainRequests
from metro_app.store.rows import iso
from metro_app.training.retrain import Progress, RetrainResult

__all__ = ["RetrainJobs", "CommandRetrains"]

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

    def start(
        self,
        trigger: str,
        on_finish: Callable[[dict[str, Any]], None] | None = None,
        run: Callable[[Progress], RetrainResult] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """(job, True) for a new job, or (the running job, False) when one is running already.

        `on_finish` is called with the finished job (state done or failed) from the job's thread;
        `run` replaces the retrain this object was made with, for this job only.
        """
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
                target=self._work, args=(job_id, on_finish, run), name=f"retrain-{job_id}", daemon=True
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

    def _work(
        self,
        job_id: str,
        on_finish: Callable[[dict[str, Any]], None] | None = None,
        run: Callable[[Progress], RetrainResult] | None = None,
    ) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            self._update(job_id, stage=stage, progress=round(done / total, 3) if total else 1.0)

        try:
            result = (run or self._run)(progress)
        except Exception as exc:  # one failed retrain must not take the hub down; the job reports it
            log.exception("retrain job %s failed", job_id)
            changes: dict[str, Any] = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        else:
            changes = {"state": "done", "result": result.to_dict(), "progress": 1.0, "stage": "done"}
        with self._lock:
            self._jobs[job_id].update(changes, finished=iso(time.time()))
            self._running = None
            job = dict(self._jobs[job_id])
        if on_finish is not None:
            try:
                on_finish(job)
            except Exception:
                log.exception("retrain job %s: recording its end failed", job_id)


class CommandRetrains:
    """Run the retrain requests the control topic recorded in the store, surviving hub restarts.

    `serve` is called after every control batch (and at start): when no retrain is running it
    claims every pending request, and every running one a stopped hub abandoned, and starts one
    job for them; while its job runs it renews the claim. A request therefore ends `done` or
    `failed` in the store even when the hub that read the command stopped before or during it.
    """

    def __init__(
        self,
        jobs: RetrainJobs,
        requests: RetrainRequests,
        holder: str,
        *,
        renew_every: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jobs, self._requests, self.holder = jobs, requests, holder
        self._renew_every, self._renewed, self._clock = renew_every, 0.0, clock

    def serve(self) -> dict[str, Any] | None:
        """Start a job for the claimable requests; the job started, or None."""
        if self._jobs.running() is not None:
            if self._clock() - self._renewed >= self._renew_every:
                self._renewed = self._clock()
                self._requests.renew(self.holder, now=self._renewed)
            return None
        ids = self._requests.claim(self.holder, now=self._clock())
        if not ids:
            return None
        job, started = self._jobs.start(
            f"control topic ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})",
            lambda job: self._done(ids, job),
        )
        if not started:  # an API retrain began between the check and the start: wait for the next call
            self._requests.release(ids)
            return None
        self._requests.assign(ids, job["id"])
        log.info("retrain job %s started for %d control request(s): %s", job["id"], len(ids), ", ".join(ids))
        return job

    def _done(self, ids: list[str], job: dict[str, Any]) -> None:
        n = self._requests.finish(ids, job["id"], job["state"], job.get("error"))
        if job["state"] == "failed":
            log.error("retrain job %s for %d control request(s) failed: %s", job["id"], n, job.get("error"))
