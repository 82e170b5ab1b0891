"""The pruning loop: small batches of old rows, a pause between them, in a thread of its own.

Each batch is one short transaction of at most `batch` rows (`metro_app.store.retention`), and the
loop sleeps `pause` seconds after it, so the hub loop's writes wait at most one batch. With several
hubs on one store, only the holder of the ``retention`` lease prunes. /health shows what it pruned
and the storage time of the oldest row kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from edgemnist.wire.messages import utc_timestamp
from metro_app.ingest.runloop import LoopHealth, run_forever
from metro_app.retention.policy import RetentionPolicy
from metro_app.store import Store

__all__ = ["LEASE_NAME", "PruneStats", "Pruner"]

log = logging.getLogger(__name__)

LEASE_NAME = "retention"


@dataclass
class PruneStats:
    """What this hub pruned since it started."""

    windows_rolled_up: int = 0  # metrics windows deleted after their counts went into hourly rows
    hourly_rows: int = 0  # writes of (camera, hour) roll-up rows: one per row per batch
    images_pruned: int = 0  # uncertain images without a label, deleted
    batches: int = 0
    sweeps: int = 0
    last_sweep: float | None = None


def _iso(t: float | None) -> str | None:
    return None if t is None else utc_timestamp(t)


class Pruner:
    """Applies a `RetentionPolicy` to a store, batch by batch, every `interval` seconds.

    `clock` returns the time in epoch seconds (tests hand in one that jumps ahead); `sleep` is
    the pause between batches (an `Event.wait` in the service, so a stop ends it at once).
    """

    def __init__(
        self,
        store: Store,
        policy: RetentionPolicy,
        *,
        batch: int = 500,
        pause: float = 0.2,
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        holder: str | None = None,
    ) -> None:
        self.policy = policy
        self.batch, self.pause, self.interval = batch, pause, interval
        self._book = store.retention()
        self._lease = store.lease(LEASE_NAME, holder, ttl=max(30.0, 3 * interval))
        self._clock = clock
        self._image_cursor = 0  # the last image id examined: labelled images there are not read again
        self.stats = PruneStats()
        self.oldest: dict[str, float | None] = {}
        self.health = LoopHealth("retention", period=max(300.0, 3 * interval))

    def sweep(self, stop: threading.Event | None = None) -> bool:
        """Prune everything that is due, batch by batch; False when another hub holds the lease."""
        stop = stop or threading.Event()
        if not self._lease.acquire():
            return False
        now = self._clock()
        if self.policy.metrics is not None:
            before = now - self.policy.metrics
            while not stop.is_set():
                done = self._book.roll_up(before, self.batch)
                self.stats.windows_rolled_up += done.windows
                self.stats.hourly_rows += done.hourly_rows
                if not self._batch_done(done.windows, stop):
                    break
        if self.policy.images is not None:
            before = now - self.policy.images
            while not stop.is_set():
                pruned, last = self._book.prune_images(before, self.batch, self._image_cursor)
                examined = last != self._image_cursor
                self._image_cursor = last
                self.stats.images_pruned += pruned
                if not self._batch_done(int(examined), stop):
                    break
        self.oldest = self._book.oldest_kept()
        self.stats.sweeps += 1
        self.stats.last_sweep = now
        return True

    def _batch_done(self, handled: int, stop: threading.Event) -> bool:
        """Count a batch that handled rows and pause; False when there was nothing left to do."""
        if not handled:
            return False
        self.stats.batches += 1
        self._lease.acquire()
        if self.pause:
            stop.wait(self.pause)
        return True

    def run(self, stop: threading.Event) -> None:
        """Sweep every `interval` seconds until `stop` is set."""
        if not self.policy.enabled:
            return

        def step() -> None:
            self.sweep(stop)
            stop.wait(self.interval)

        run_forever(step, stop, self.interval, "retention: a sweep", log, health=self.health)

    def as_dict(self) -> dict[str, Any]:
        """/health's ``retention``: the policy, rows pruned per kind, and the oldest rows kept."""
        oldest = self.oldest
        return {
            "metrics_days": None if self.policy.metrics is None else self.policy.metrics / 86400,
            "images_days": None if self.policy.images is None else self.policy.images / 86400,
            **asdict(self.stats),
            "last_sweep": _iso(self.stats.last_sweep),
            "oldest_window": _iso(oldest.get("metrics")),
            "oldest_image": _iso(oldest.get("images")),
            "oldest_hourly": _iso(oldest.get("hourly")),
        }
