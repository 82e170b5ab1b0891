"""The run loop the hub's consumer loops share: step until told to stop, never die of one failure."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["LoopHealth", "run_forever", "rewind"]

log = logging.getLogger(__name__)


class LoopHealth:
    """Whether a loop makes progress: stuck when one step (or a run of failed steps) outlasts `period`.

    A step that returns is progress; a step that is still running, or that keeps failing on the
    same records, is not. GET /health says ``degraded`` naming a loop stuck longer than its period.
    """

    def __init__(self, name: str, period: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.name, self.period, self._clock = name, period, clock
        self._since: float | None = None  # when the step now running (or failing) began

    def begin(self) -> None:
        if self._since is None:
            self._since = self._clock()

    def done(self) -> None:
        self._since = None

    def stuck(self, now: float | None = None) -> float | None:
        """Seconds without progress when longer than the period, else None."""
        since = self._since
        if since is None:
            return None
        waited = (self._clock() if now is None else now) - since
        return waited if waited > self.period else None

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        return {"period": self.period, "stuck_seconds": self.stuck(now)}


def run_forever(
    step: Callable[[], object],
    stop: threading.Event,
    retry_seconds: float,
    what: str,
    log: logging.Logger,
    *,
    health: LoopHealth | None = None,
) -> None:
    """Call `step` until `stop` is set; an exception is logged (naming `what`) and retried after a pause.

    One bad record or a failed batch must never end a loop that a service thread runs: each loop
    handles the records it can in `step` and leaves the rest for the next call. `health` learns
    when steps begin and when one completes, so a loop stuck on a record is reported.
    """
    while not stop.is_set():
        try:
            if health is not None:
                health.begin()
            step()
            if health is not None:
                health.done()
        except Exception:
            log.exception("%s failed; retrying in %.1f s", what, retry_seconds)
            stop.wait(retry_seconds)


def rewind(consumer: Any, batch: Mapping[Any, Sequence[Any]]) -> None:
    """Seek each partition of a polled batch back to its first record, so the next poll re-reads it."""
    for tp, recs in batch.items():
        if recs:
            try:
                consumer.seek(tp, recs[0].offset)
            except Exception as exc:
                log.warning("could not rewind %s: %s", tp, exc)
