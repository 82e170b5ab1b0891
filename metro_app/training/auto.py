"""Retraining on its own (`metro-app run --auto-retrain`): the hub starts a retrain when the labels call for one.

Two triggers, checked every ``interval`` seconds by the one hub holding the ``auto-retrain`` lease:

- **labels**: at least ``labels`` (100) labels stored since the newest model in the registry was
  trained (a refused candidate counts as newest, so its labels are not tried twice);
- **drift**: a camera has an open drift alert (`metro_app.monitoring.drift.SIGNALS`) and at least
  ``drift_labels`` (30) of those new labels are on its images.

Never two at once (the hub's one `RetrainJobs`), never while a rollout is undecided (pending, in
shadow or on its canary): its verdict would be lost in the next. An accepted candidate goes out
through a rollout that starts in shadow on the drifting cameras (else on the camera with most new
labels), so it serves nowhere before the paired rule (`metro_app.rollout.paired`) lets it.

Every step is recorded with its trigger: the log, an audit row (person ``auto-retrain``), and the
candidate's ``started_by`` event in the registry, which the Models panel shows.

>>> AutoPolicy(labels=100, drift_labels=30).labels
100
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgemnist.cliargs import check_fields
from edgemnist.wire.fields import parse_timestamp
from metro_app.ingest.runloop import LoopHealth, run_forever
from metro_app.monitoring.drift import SIGNALS
from metro_app.store import Store
from metro_app.training.jobs import RetrainJobs
from metro_app.training.retrain import Progress, RetrainResult
from metro_app.training.settings import RetrainSettings

__all__ = ["AutoPolicy", "Trigger", "AutoRetrain", "LEASE_NAME", "STARTED_BY"]

log = logging.getLogger(__name__)
LEASE_NAME = "auto-retrain"
STARTED_BY = "started_by"  # the registry event the Models panel shows (metro_app.api.models.STARTED_BY)


@dataclass(frozen=True, slots=True)
class AutoPolicy:
    """When the hub retrains on its own."""

    labels: int = 100
    drift_labels: int = 30
    interval: float = 10.0

    def __post_init__(self) -> None:
        checks = [
            ("labels", 1 <= self.labels <= 10_000_000, "must be 1 or more"),
            ("drift_labels", 1 <= self.drift_labels <= 10_000_000, "must be 1 or more"),
            ("interval", self.interval > 0, "must be more than 0 seconds"),
        ]
        check_fields(self, checks, prefix="auto-retrain ")


@dataclass(frozen=True, slots=True)
class Trigger:
    """Why a retrain starts now, and the cameras its candidate goes to in shadow."""

    kind: str  # "labels" or "drift"
    reason: str
    cameras: tuple[str, ...]


def _epoch(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return parse_timestamp(str(value)).timestamp()


def find_trigger(store: Store, policy: AutoPolicy, running: str | None) -> tuple[Trigger | None, str]:
    """The trigger that fires now, or (None, why not)."""
    if running is not None:
        return None, f"retrain {running} is running"
    active = store.rollout_book().active()
    if active:
        r = active[0]
        return None, f"rollout {r['id']} of {r['version']} is undecided ({r['state']})"
    models = store.models()
    since = max((_epoch(m["created"]) for m in models), default=0.0)
    newest = max(models, key=lambda m: _epoch(m["created"]))["version"] if models else None
    by_camera = store.labels_since(since)
    total = sum(by_camera.values())
    drifting = sorted({a["camera"] for a in store.alerts("open") if a.get("signal") in SIGNALS})
    fed = [c for c in drifting if by_camera.get(c, 0) >= policy.drift_labels]
    if fed:
        counts = ", ".join(f"{c} {by_camera[c]}" for c in fed)
        why = (
            f"drift alert open on {', '.join(fed)} with new labels ({counts}; at least {policy.drift_labels})"
        )
        return Trigger("drift", why, tuple(fed)), why
    if total >= policy.labels:
        cameras = tuple(drifting) or (max(by_camera, key=lambda c: (by_camera[c], c)),)
        why = f"{total} labels since {newest or 'the first model'} was trained (at least {policy.labels})"
        return Trigger("labels", why, cameras), why
    return None, f"{total} new labels of {policy.labels}; no drifting camera with {policy.drift_labels}"


class AutoRetrain:
    """Checks the triggers and starts retrains in the hub's job runner, while holding the lease."""

    def __init__(
        self,
        store: Store,
        jobs: RetrainJobs,
        settings: RetrainSettings,
        run: Callable[[RetrainSettings, Progress], RetrainResult],
        policy: AutoPolicy | None = None,
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.settings = settings
        self._run = run
        self.policy = policy or AutoPolicy()
        self.lease = store.lease(LEASE_NAME, holder, ttl=max(30.0, 3 * self.policy.interval))
        self.clock = clock
        self.health = LoopHealth("auto_retrain", period=max(60.0, 10 * self.policy.interval))
        self.stats: dict[str, Any] = {"leader": False, "started": 0, "last": None, "waiting": None}

    def tick(self) -> dict[str, Any] | None:
        """Start a retrain if a trigger fires; the job, or None."""
        leader = self.lease.acquire(now=self.clock())
        self.stats["leader"] = leader
        if not leader:
            return None
        trigger, why = find_trigger(self.store, self.policy, self.jobs.running())
        self.stats["waiting"] = None if trigger else why
        if trigger is None:
            return None
        settings = dataclasses.replace(self.settings, canary=",".join(trigger.cameras))
        job, started = self.jobs.start(
            f"auto-retrain ({trigger.kind}): {trigger.reason}",
            on_finish=self._finished(trigger),
            run=lambda progress: self._run(settings, progress),
        )
        if not started:
            return None
        self.stats["started"] += 1
        self.stats["last"] = {"job": job["id"], "trigger": trigger.kind, "reason": trigger.reason}
        self.store.add_audit(
            "auto-retrain", None, True, "auto-retrain", job["id"], 202,
            {"trigger": trigger.kind, "reason": trigger.reason, "shadow_on": list(trigger.cameras)},
        )  # fmt: skip
        log.info(
            "auto-retrain: job %s started: %s; shadow on %s",
            job["id"],
            trigger.reason,
            ", ".join(trigger.cameras),
        )
        return job

    def _finished(self, trigger: Trigger) -> Callable[[dict[str, Any]], None]:
        def note(job: Mapping[str, Any]) -> None:
            version = (job.get("result") or {}).get("version")
            if version:
                self.store.note_model_event(
                    version,
                    STARTED_BY,
                    f"retrain {job['id']} started by auto-retrain ({trigger.kind}): {trigger.reason}",
                )
            log.info(
                "auto-retrain: job %s %s: %s",
                job["id"],
                job.get("state"),
                (job.get("result") or {}).get("reason"),
            )

        return note

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop`; a failed tick is logged and the next one tries again."""

        def step() -> None:
            self.tick()
            stop.wait(self.policy.interval)

        try:
            run_forever(step, stop, self.policy.interval, "auto-retrain: a check", log, health=self.health)
        finally:
            try:
                self.lease.release()
            except Exception as exc:
                log.warning("auto-retrain: releasing the lease: %s", exc)
