"""Where the edge's messages go: the durable outbox (then Kafka), or stdout for --dry-run."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Protocol, TextIO

from edge_app.outbox import IMAGE, METRICS, Outbox, Record
from edgemnist.wire.messages import MetricsMessage, OutboxStats, UncertainImage

__all__ = ["Sink", "StdoutSink", "OutboxSink", "message_key"]


class Sink(Protocol):
    def put(self, messages: Sequence[UncertainImage | MetricsMessage], key: bytes) -> None: ...

    def stats(self) -> OutboxStats | None: ...


def message_key(msg: UncertainImage | MetricsMessage) -> bytes:
    """The Kafka key of a message: its camera, so each camera's messages keep their order."""
    if isinstance(msg, UncertainImage):
        return msg.camera.encode()
    return next(iter(msg.camera_metrics)).encode()


class StdoutSink:
    """--dry-run: one JSON message per line on stdout instead of Kafka."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    def put(self, messages: Sequence[UncertainImage | MetricsMessage], key: bytes) -> None:
        for m in messages:
            self._out.write(m.to_json().decode())
            self._out.write("\n")
        self._out.flush()

    def stats(self) -> OutboxStats | None:
        return None


class OutboxSink:
    """Everything goes into the durable outbox first; the Sender takes it to Kafka."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def put(self, messages: Sequence[UncertainImage | MetricsMessage], key: bytes) -> None:
        self._outbox.put(
            [Record(METRICS if isinstance(m, MetricsMessage) else IMAGE, key, m.to_json()) for m in messages]
        )

    def stats(self) -> OutboxStats | None:
        return self._outbox.stats()
