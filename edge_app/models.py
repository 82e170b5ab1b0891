"""Model hot-swap: the edge follows the models topic and serves the newest model meant for it.

A background thread reads the whole models topic (no consumer group: every edge
sees every record, from the beginning, on every start). The model to serve is the
last record, in topic order, whose audience includes this camera, so a later
record with an older version is a rollback and is swapped in too. A candidate is
checked against the trusted keys (`edge_app.trust`), verified (sha256, the skops
allow-list), probed on a few prepared images, saved
in the edge's state directory and only then offered to the runner, which swaps
it in between micro-batches. A refused model is logged once, reported in the
next metrics message and never retried; the serving model keeps running.

A record under a ``shadow:`` key (`edgemnist.wire.envelope`) offers a **shadow** model:
verified, probed and saved the same way, it scores beside the serving model and never
decides what is sent. The last shadow record meant for this camera wins; a tombstone
under that key, or any later serving record meant for this camera (the rollout ended:
promoted or rolled back), withdraws it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from edge_app.saved_models import SavedModels, initial_model, initial_shadow
from edge_app.trust import ModelTrust
from edgemnist.errors import BrokerUnavailable, ConfigError, ModelError, SchemaError
from edgemnist.model import Model, load_model_bytes
from edgemnist.wire.envelope import ALL_CAMERAS, SHADOW_KEY_PREFIX, ModelEnvelope
from edgemnist.wire.messages import ModelRefusal

__all__ = [
    "SavedModels",
    "ServingModel",
    "ModelWatcher",
    "Reader",
    "Record",
    "key_applies",
    "probe_model",
    "initial_model",
    "initial_shadow",
]

log = logging.getLogger(__name__)

MAX_REASON = 500


class Record(Protocol):
    """What the watcher needs of a models-topic record (edgemnist.kafka.TopicRecord has it)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


class Reader(Protocol):
    """The models topic as the watcher reads it (edgemnist.kafka.TopicReader, or a fake)."""

    def open(self) -> bool: ...

    def poll(self, timeout: float) -> Sequence[Record]: ...

    def caught_up(self) -> bool: ...

    def close(self) -> None: ...


def key_applies(key: bytes | None, camera: str) -> bool:
    """Whether a record's key (its audience: ``*`` or target names) names `camera`.

    Used for records whose envelope cannot be parsed: a malformed model meant for
    this camera is refused and reported; one meant for others is none of its business.
    """
    if key is None or key == ALL_CAMERAS:
        return True
    targets = key.decode("utf-8", "replace").split(",")
    return any(camera == t or camera.startswith(f"{t}-") for t in targets)


def probe_model(model: Model, images: np.ndarray) -> None:
    """Score `images` (prepared (N, 28, 28)); raise ModelError unless (N, 10), finite, rows summing to 1."""
    try:
        proba = model.predict_proba(images)
    except Exception as exc:  # a foreign estimator may fail in any way; all mean "unusable"
        raise ModelError(f"probe: scoring failed: {type(exc).__name__}: {exc}") from exc
    proba = np.asarray(proba)
    if proba.shape != (len(images), 10):
        raise ModelError(f"probe: output shape {proba.shape}, expected ({len(images)}, 10)")
    if not np.isfinite(proba).all():
        raise ModelError("probe: output holds NaN or infinite scores")
    if not np.allclose(proba.sum(axis=1), 1.0, atol=1e-6):
        raise ModelError("probe: scores of an image do not sum to 1")


class ServingModel:
    """The model the runner should score the next micro-batch with, and refusals not yet reported.

    Shared by the watcher thread (which offers models and refusals) and the runner
    (which reads them between micro-batches); every access holds a lock.
    """

    def __init__(self, model: Model) -> None:
        self._lock = threading.Lock()
        self._model = model
        self._shadow: Model | None = None
        self._refused: list[ModelRefusal] = []
        self.refused_total = 0  # every refusal since start (the pending ones go out with the next window)

    def current(self) -> Model:
        with self._lock:
            return self._model

    def shadow(self) -> Model | None:
        """The model to score beside the serving one, or None."""
        with self._lock:
            return self._shadow

    def offer_shadow(self, model: Model | None) -> None:
        with self._lock:
            self._shadow = model

    def offer(self, model: Model) -> None:
        with self._lock:
            self._model = model

    def refuse(self, refusal: ModelRefusal) -> None:
        with self._lock:
            self._refused.append(refusal)
            self.refused_total += 1

    def pending_refusals(self) -> tuple[ModelRefusal, ...]:
        """Refusals since the last metrics message (at most 100, the wire's limit)."""
        with self._lock:
            return tuple(self._refused[:100])

    def reported(self, n: int) -> None:
        """The first `n` pending refusals went out in a metrics message."""
        with self._lock:
            del self._refused[:n]


class ModelWatcher:
    """Reads the models topic in a daemon thread and offers each new model meant for `camera`.

    The choice (last applicable record wins), verification, probe and refusals are in
    :meth:`consider`, so they test with fakes; the thread only feeds it records.
    """

    def __init__(
        self,
        reader_factory: Callable[[], Reader],
        camera: str,
        serving: ServingModel,
        saved_models: SavedModels,
        probe: np.ndarray,
        *,
        poll_timeout: float = 1.0,
        retry: float = 2.0,
        trust: ModelTrust,
    ) -> None:
        self._factory = reader_factory
        self._trust = trust
        self._camera = camera
        self._serving = serving
        self._saved_models = saved_models
        self._probe = probe
        self._poll_timeout = poll_timeout
        self._retry = retry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._latest: Record | None = None  # last applicable record read, not yet considered
        self._latest_shadow: Record | None = None  # likewise for shadow records
        self._shadow_ended = False  # a tombstone or a serving record came after the shadow record
        self._considered: set[tuple[int, int]] = set()
        self._refused: set[tuple[str, str]] = set()  # (version, sha256 or "") never retried
        self._newest: dict[int, int] = {}  # partition -> the highest offset fed
        self._seq = saved_models.current_seq()  # publication number of the model serving, if known
        self.accepted: list[str] = []
        self.refused: list[ModelRefusal] = []

    # ----- the choice, testable without a thread or a broker ------------------------------------

    def feed(self, records: Sequence[Record]) -> None:
        """Remember the last record, in topic order, that is meant for this camera (serving and shadow).

        Topic order is the registry's publishing order (the hub is the models topic's one writer,
        and a rollback is a new record); the record timestamp is the sender's clock and never counts.
        A serving record meant for this camera ends any shadow before it (the rollout is over).
        """
        for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
            if rec.offset <= self._newest.get(rec.partition, -1):
                continue  # re-delivered: an earlier record never overtakes a later one
            self._newest[rec.partition] = rec.offset
            key = rec.key or b""
            if key.startswith(SHADOW_KEY_PREFIX):
                if key_applies(key[len(SHADOW_KEY_PREFIX) :], self._camera):
                    self._latest_shadow = rec if rec.value is not None else None
                    self._shadow_ended = rec.value is None
            elif rec.value is not None and key_applies(rec.key, self._camera):
                self._latest = rec
                self._latest_shadow, self._shadow_ended = None, True

    def consider(self) -> Model | None:
        """Verify, probe, save and offer the remembered records' models; the serving one, or None."""
        model = self._consider_serving()
        self._consider_shadow()
        return model

    def _consider_serving(self) -> Model | None:
        env, where = self._envelope(self._take("serve"), "serve")
        if env is None:
            return None
        serving = self._serving.current()
        same = env.version == serving.version and env.sha256 == serving.sha256
        if same and hashlib.sha256(env.data).hexdigest() == serving.sha256:
            return None  # already serving exactly this model
        model = self._admit(env, where)
        if model is None:
            return None
        log.info(
            "model %s (parent %s, sha256 %s…) verified, probed and saved to %s; swapping it in for %s "
            "between micro-batches",
            env.version,
            env.parent,
            env.sha256[:12],
            model.path,
            serving.version,
        )
        self._serving.offer(model)
        self.accepted.append(env.version)
        if env.seq is not None:
            self._seq = env.seq
        return model

    def _consider_shadow(self) -> None:
        rec = self._take("shadow")
        if self._shadow_ended:
            self._shadow_ended = False
            if self._serving.shadow() is not None or self._saved_models.shadow() is not None:
                log.info("shadow model withdrawn; scoring with the serving model only")
                self._serving.offer_shadow(None)
                self._saved_models.withdraw_shadow()
        env, where = self._envelope(rec, "shadow")
        if env is None:
            return
        current = self._serving.shadow()
        if current is not None and (current.version, current.sha256) == (env.version, env.sha256):
            return
        model = self._admit(env, where)
        if model is not None:
            log.info("shadow model %s scores beside %s from the next batch", env.version,
                     self._serving.current().version)  # fmt: skip
            self._serving.offer_shadow(model)
            self.accepted.append(env.version)

    def _take(self, role: str) -> Record | None:
        """The remembered record of `role`, once: None when none is new."""
        if role == "shadow":
            rec, self._latest_shadow = self._latest_shadow, None
        else:
            rec, self._latest = self._latest, None
        if rec is None or (rec.partition, rec.offset) in self._considered:
            return None
        self._considered.add((rec.partition, rec.offset))
        return rec

    def _envelope(self, rec: Record | None, role: str) -> tuple[ModelEnvelope | None, str]:
        """The record's envelope when it is well formed, of `role` and for this camera; else None."""
        if rec is None:
            return None, ""
        where = f"{rec.topic}[{rec.partition}]@{rec.offset}"
        try:
            env = ModelEnvelope.from_record(rec.key, rec.value, where)
        except SchemaError as exc:
            self._refuse(_header_version(rec.value) or where, "", f"malformed envelope: {exc}")
            return None, where
        if not env.applies_to(self._camera):
            return None, where  # the key named us but the header's targets do not: not ours
        if env.role != role:
            self._refuse(env.version, _ident(env), f"{where}: a {env.role} envelope under a {role} key")
            return None, where
        return env, where

    def _admit(self, env: ModelEnvelope, where: str) -> Model | None:
        """Check origin and order, then verify, probe and save `env`'s model; None (refused) on failure."""
        ident = _ident(env)
        if (env.version, ident) in self._refused:
            return None
        untrusted = self._trust.check(env)
        if untrusted is not None:
            self._refuse(env.version, ident, untrusted)
            return None
        if env.seq is not None and self._seq is not None and env.seq < self._seq:
            self._refuse(
                env.version,
                ident,
                f"replayed: publication {env.seq} is older than publication {self._seq} of the model serving",
            )
            return None
        try:
            model = load_model_bytes(env.data, expected_sha256=env.sha256, version=env.version, name=where)
            probe_model(model, self._probe)
        except ModelError as exc:
            self._refuse(env.version, ident, str(exc))
            return None
        except Exception as exc:  # a loader failure nobody foresaw is still a refusal that says why
            self._refuse(env.version, ident, f"{where}: cannot load model: {type(exc).__name__}: {exc}")
            return None
        try:
            path = self._saved_models.save(env)
        except OSError as exc:
            self._refuse(env.version, ident, f"cannot save it in {self._saved_models.directory}: {exc}")
            return None
        return dataclasses.replace(model, path=path)

    def _refuse(self, version: str, sha256: str, reason: str) -> None:
        self._refused.add((version, sha256))
        reason = reason[:MAX_REASON]
        log.warning(
            "refused model %s: %s; still serving %s", version, reason, self._serving.current().version
        )
        refusal = ModelRefusal(version[:300], reason)
        self.refused.append(refusal)
        self._serving.refuse(refusal)

    # ----- the thread --------------------------------------------------------------------------

    def start(self) -> ModelWatcher:
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> ModelWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        reader: Reader | None = None
        assigned = waiting_said = False
        while not self._stop.is_set():
            try:
                if reader is None:
                    reader, assigned = self._factory(), False
                if not assigned:
                    assigned = reader.open()
                    if not assigned:
                        if not waiting_said:
                            log.info("models topic not there yet; looking again every %gs", self._retry)
                            waiting_said = True
                        self._stop.wait(self._retry)
                        continue
                    log.info("reading the models topic from its beginning")
                self.feed(reader.poll(self._poll_timeout))
                if reader.caught_up():
                    self.consider()
            except BrokerUnavailable as exc:
                log.debug("models topic unreachable (%s); retrying in %gs", exc, self._retry)
                _close_quietly(reader)
                reader = None
                self._stop.wait(self._retry)
            except ConfigError as exc:  # e.g. AccessDenied: say what is missing, no traceback
                log.error("models topic: %s; trying again in %gs", exc, self._retry)
                _close_quietly(reader)
                reader = None
                self._stop.wait(self._retry)
            except Exception:  # the watcher must never take the edge down; it logs and starts over
                log.exception("models topic reader failed; starting over in %gs", self._retry)
                _close_quietly(reader)
                reader = None
                self._stop.wait(self._retry)
        _close_quietly(reader)


def _close_quietly(reader: Reader | None) -> None:
    if reader is not None:
        try:
            reader.close()
        except Exception:  # closing a broken reader may fail; nothing more to do with it
            log.debug("closing the models topic reader failed", exc_info=True)


def _ident(env: ModelEnvelope) -> str:
    """What a refusal is remembered by: the model's hash and its signature (re-signed, it is tried again)."""
    return env.sha256 + (f":{env.signature.sig}" if env.signature else "")


def _header_version(value: bytes | None) -> str | None:
    """The version a malformed envelope claims, for the refusal report, when its header is readable."""
    if not value or len(value) < 8:
        return None
    try:
        n = int.from_bytes(value[4:8], "big")
        head = json.loads(value[8 : 8 + n])
        version = head.get("version") if isinstance(head, dict) else None
    except (ValueError, UnicodeDecodeError):
        return None
    return version if isinstance(version, str) and 0 < len(version) <= 300 else None
