"""The run loop the hub's consumer loops share: step until told to stop, never die of one failure."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["run_forever", "rewind"]

log = logging.getLogger(__name__)


def run_forever(
    step: Callable[[], object], stop: threading.Event, retry_seconds: float, what: str, log: logging.Logger
) -> None:
    """Call `step` until `stop` is set; an exception is logged (naming `what`) and retried after a pause.

    One bad record or a failed batch must never end a loop that a service thread runs: each loop
    handles the records it can in `step` and leaves the rest for the next call.
    """
    while not stop.is_set():
        try:
            step()
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
