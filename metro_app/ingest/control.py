"""The control topic: commands (`retrain`) and training events from other systems.

Shapes, as seed systems send them (JSON objects, UTF-8)::

    {"type": "command", "payload": "retrain"}
    {"type": "training", "payload": {"image": "<base64 PNG>", "label": 7,
                                     "labeller": "...", "source": "...", "id": "..."}}

A training event becomes a stored training image plus its label, idempotent
on ``id`` (derived from the PNG's sha256 when absent), so it feeds the next
retrain. Anything else goes to the dead-letter topic with the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from edgemnist.errors import SchemaError
from edgemnist.png import check_png
from metro_app.ingest.loop import DeadLetterSink
from metro_app.ingest.runloop import LoopHealth, run_forever
from metro_app.ingest.validate import RecordLike
from metro_app.store import DeadLetter, Store

__all__ = ["COMMANDS", "Command", "TrainingEvent", "parse_control", "control_group_id", "ControlLoop"]

log = logging.getLogger(__name__)
COMMANDS = ("retrain",)
_MAX_PNG_BYTES = 1 << 20


def control_group_id(topic: str) -> str:
    """The hub's consumer group on the control topic (apart from the events group)."""
    return f"MetroEdge-control-{topic}"


@dataclass(frozen=True, slots=True)
class Command:
    name: str


@dataclass(frozen=True, slots=True)
class TrainingEvent:
    """A labelled image sent by another system."""

    id: str
    image: str  # base64 PNG, as received
    label: int
    labeller: str
    source: str

    def as_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "image": self.image,
            "label": self.label,
            "labeller": self.labeller,
            "source": self.source,
        }


def _text(payload: dict[str, Any], key: str, where: str, *, optional: bool = False) -> str | None:
    v = payload.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, str) or not 1 <= len(v) <= 300 or "\x00" in v:
        raise SchemaError(f"{where}: training payload key {key!r} must be a string of 1 to 300 characters")
    return v


def _png(payload: dict[str, Any], where: str) -> tuple[str, bytes]:
    v = payload.get("image")
    if not isinstance(v, str) or not v:
        raise SchemaError(f"{where}: training payload key 'image' must be a base64 PNG string")
    try:
        data = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SchemaError(f"{where}: training payload key 'image' is not valid base64") from exc
    if len(data) > _MAX_PNG_BYTES:
        raise SchemaError(f"{where}: training payload key 'image' is larger than {_MAX_PNG_BYTES} bytes")
    check_png(data, f"{where}: training payload key 'image'")
    return v, data


def _training(payload: Any, where: str) -> TrainingEvent:
    if not isinstance(payload, dict):
        raise SchemaError(f"{where}: a training event's payload must be a JSON object")
    label = payload.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= 9:
        raise SchemaError(f"{where}: training payload key 'label' must be a digit 0 to 9, got {label!r}")
    image, data = _png(payload, where)
    given = _text(payload, "id", where, optional=True)
    return TrainingEvent(
        id=given or f"train-{hashlib.sha256(data).hexdigest()[:32]}",
        image=image,
        label=label,
        labeller=_text(payload, "labeller", where) or "",
        source=_text(payload, "source", where) or "",
    )


def parse_control(rec: RecordLike) -> Command | TrainingEvent | DeadLetter:
    """One control record as a command, a training event, or the dead letter saying what is wrong."""
    where = f"{rec.topic}[{rec.partition}]@{rec.offset}"
    try:
        if rec.value is None:
            raise SchemaError(f"{where}: empty record (tombstone), expected a JSON object")
        try:
            obj = orjson.loads(rec.value)
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"{where}: not UTF-8 JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise SchemaError(f"{where}: a control event must be a JSON object, got {type(obj).__name__}")
        kind, payload = obj.get("type"), obj.get("payload")
        if kind == "command":
            if payload not in COMMANDS:
                raise SchemaError(f"{where}: unknown command {payload!r}; commands: {', '.join(COMMANDS)}")
            return Command(payload)
        if kind == "training":
            return _training(payload, where)
        raise SchemaError(f"{where}: key 'type' must be 'command' or 'training', got {kind!r}")
    except SchemaError as exc:
        return DeadLetter(rec.topic, rec.partition, rec.offset, str(exc))
    except Exception as exc:  # one record the parser chokes on never takes its batch down
        log.exception("control record %s could not be parsed", where)
        return DeadLetter(rec.topic, rec.partition, rec.offset, f"{where}: {type(exc).__name__}: {exc}")


class ControlLoop:
    """Poll the control topic: store training events and retrain requests, dead-letter bad events,
    commit, then run commands (`on_command`); `after_batch` runs after every poll, batch or not."""

    def __init__(
        self,
        consumer: Any,
        store: Store,
        dead_letters: DeadLetterSink,
        on_command: Callable[[str], None],
        *,
        poll_timeout_ms: int = 500,
        retry_seconds: float = 1.0,
        after_batch: Callable[[], object] | None = None,
    ) -> None:
        self._consumer = consumer
        self._after_batch = after_batch
        self._store = store
        self._dead = dead_letters
        self._on_command = on_command
        self.poll_timeout_ms = poll_timeout_ms
        self.retry_seconds = retry_seconds
        self.stats = {"records": 0, "commands": 0, "training_stored": 0, "dead_letters": 0}
        self.health = LoopHealth("control")

    def step(self) -> int:
        """Handle one polled batch, then call `after_batch`; returns how many records it committed."""
        done = self._batch()
        if self._after_batch is not None:
            self._after_batch()
        return done

    def _batch(self) -> int:
        batch = self._consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=500)
        records = [r for recs in batch.values() for r in recs]
        if not records:
            return 0
        parsed = [(rec, parse_control(rec)) for rec in records]
        training = [p.as_row() for _, p in parsed if isinstance(p, TrainingEvent)]
        bad = [(rec, p) for rec, p in parsed if isinstance(p, DeadLetter)]
        for _, dead in bad:
            log.warning("control dead letter: %s", dead.reason[:300])
        requests = [
            (f"{rec.topic}[{rec.partition}]@{rec.offset}", f"control topic {rec.topic}")
            for rec, p in parsed
            if isinstance(p, Command)
        ]
        try:
            stored = self._store.add_training_images(training)
            self._store.retrain_requests().record(requests)  # before the commit: a stopped hub loses none
            if bad:
                self._store.write_batch([], [], [d for _, d in bad])
                self._dead(bad)
        except Exception:
            log.exception("control batch of %d records failed; it will be retried", len(records))
            for tp, recs in batch.items():
                self._consumer.seek(tp, recs[0].offset)
            time.sleep(self.retry_seconds)
            return 0
        try:
            self._consumer.commit()
        except Exception as exc:  # re-delivery is harmless: training images are idempotent
            log.warning("control offset commit failed (%s)", exc)
        self.stats["records"] += len(records)
        self.stats["training_stored"] += stored
        self.stats["dead_letters"] += len(bad)
        for _, p in parsed:
            if isinstance(p, Command):
                self.stats["commands"] += 1
                self._on_command(p.name)
        return len(records)

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set; a failed batch is retried, never ends the loop."""
        run_forever(self.step, stop, self.retry_seconds, "control loop: a batch", log, health=self.health)
