"""Publish an accepted model on the models topic, one `ModelEnvelope` record per model.

The topic is compacted (the newest model per audience stays) and created
with a `max.message.bytes` that fits the largest model an edge accepts plus
the envelope header; the producer's request limit matches. A model too
large for that is refused here, before anything is sent.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from edgemnist import topics
from edgemnist.errors import BrokerUnavailable, ModelError
from edgemnist.signing import PUBLIC_KEY_FILE, SigningKey, default_signing_key
from edgemnist.wire.envelope import MAX_HEADER_BYTES, MAX_MODEL_BYTES, ModelEnvelope
from metro_app.store import Store

__all__ = [
    "MAX_RECORD_BYTES",
    "models_topic_config",
    "envelope_for",
    "ModelPublisher",
    "load_signing_key",
]

log = logging.getLogger(__name__)
# value = magic + length + header + model; key and record-batch framing fit in the slack
MAX_RECORD_BYTES = MAX_MODEL_BYTES + 8 + MAX_HEADER_BYTES + 64 * 1024


def models_topic_config() -> dict[str, str]:
    """Topic configs of the models topic: compacted, and big enough for a model."""
    return {"cleanup.policy": "compact", "max.message.bytes": str(MAX_RECORD_BYTES)}


def envelope_for(
    store: Store, version: str, targets: tuple[str, ...] | None = None, role: str = "serve"
) -> ModelEnvelope:
    """The registered model as it goes on the wire; refuses an unknown or oversized model."""
    card = store.model(version)
    data = store.model_file(version)
    if card is None or data is None:
        raise ModelError(f"no model version {version!r} in the registry")
    if len(data) > MAX_MODEL_BYTES:
        raise ModelError(
            f"model {version}: {len(data)} bytes is larger than the {MAX_MODEL_BYTES} bytes an edge "
            "accepts on the models topic; not published"
        )
    return ModelEnvelope(version, card["sha256"], data, card["parent"], card["created"], targets, role)


def load_signing_key(path: str | None) -> SigningKey:
    """The hub's signing key from `path` (ConfigError if unreadable).

    Without a path, the key pair in `edgemnist.signing.default_key_dir()`, made on first use: the
    hub always signs. Edges on this machine trust its hub.pub by default; elsewhere they need it.
    """
    if not path:
        key, file, made = default_signing_key()
        log.log(
            logging.WARNING if made else logging.INFO,
            "no --signing-key (EDGE_MNIST_SIGNING_KEY): signing with key %s from %s%s; give edges on "
            "other machines %s with --trusted-keys",
            key.key_id, file, " (made now)" if made else "", file.with_name(PUBLIC_KEY_FILE),
        )  # fmt: skip
        return key
    key = SigningKey.load(path)
    log.info("signing published models with key %s from %s", key.key_id, path)
    return key


class ModelPublisher:
    """Send registered models to the models topic and mark them published.

    A model published to every camera supersedes the one they ran: one model is published per
    audience, older ones read ``superseded`` with the time.

    The producer is created on first use (from `edgemnist.kafka`), or handed in by tests. With
    `signing_key` every envelope is signed for its audience (`edgemnist.signing`).
    """

    def __init__(
        self,
        kafka: Any = None,
        topic: str = topics.MODELS,
        *,
        producer: Any = None,
        timeout: float = 60.0,
        signing_key: SigningKey | None = None,
    ) -> None:
        if not topic:
            raise ModelError("the models topic name must not be empty")
        self._kafka = kafka
        self.topic = topic
        self._producer = producer
        self.timeout = timeout
        self.signing_key = signing_key
        self._ready = producer is not None

    def _open(self) -> Any:
        if self._producer is None:
            from edgemnist.kafka import make_producer

            self._producer = make_producer(self._kafka, max_request_size=MAX_RECORD_BYTES)
        if not self._ready:
            from edgemnist.kafka import ensure_topics

            ensure_topics(self._kafka, {self.topic: 1}, configs={self.topic: models_topic_config()})
            self._ready = True
        return self._producer

    def publish(
        self,
        store: Store,
        version: str,
        targets: tuple[str, ...] | None = None,
        *,
        status: str = "published",
        why: str = "",
        role: str = "serve",
    ) -> ModelEnvelope:
        """Record a `publishing` event, send the model, wait for the broker's ack, then record its `status`.

        `targets` (camera names) limits it to those cameras: a canary (status "canary"), or a
        rollback of one; `why` opens the event's reason. `role` "shadow" sends it to score beside
        the serving model on those cameras (`edgemnist.wire.envelope`).
        """
        envelope = envelope_for(store, version, targets, role)  # a model too large is refused here, unsent
        producer = self._open()
        audience = "every camera" if targets is None else ", ".join(targets)
        audience = f"{audience} in the shadow role" if role == "shadow" else audience
        # recorded before the send: a crash between send and record leaves this mark, not a silent
        # candidate; its id is the publication number edges use to refuse replayed older records
        seq = store.note_model_event(
            version, "publishing", f"sending as {status} on {self.topic} for {audience}"
        )
        envelope = dataclasses.replace(envelope, seq=seq)
        if self.signing_key is not None:
            envelope = envelope.signed(self.signing_key)
        key, value = envelope.to_record()
        try:
            future = producer.send(self.topic, key=key, value=value)
            producer.flush(timeout=self.timeout)
            meta = future.get(timeout=self.timeout)
        except Exception as exc:  # kafka-python raises its own KafkaError family; all mean "not published"
            raise BrokerUnavailable(f"model {version}: not acknowledged on {self.topic!r}: {exc}") from exc
        reason = f"on {self.topic} partition {meta.partition} offset {meta.offset} for {audience}"
        reason = f"{why}: {reason}" if why else reason
        # published to every camera in the serving role: the fleet's previous model is superseded
        fleet = targets is None and status == "published" and role == "serve"
        old = store.set_model_status(version, status, reason, supersede=fleet)
        log.info(
            "model %s %s: %s%s", version, status, reason, f"; superseded {', '.join(old)}" if old else ""
        )
        return envelope

    def withdraw_shadow(self, targets: tuple[str, ...] | None) -> None:
        """End the shadow model on `targets`: a tombstone under their ``shadow:`` key (unsigned, since
        it carries no model; at worst an edge stops shadow scoring, it never serves anything new)."""
        producer = self._open()
        key = ModelEnvelope("-", "0" * 64, b"", targets=targets, role="shadow").key
        try:
            future = producer.send(self.topic, key=key, value=None)
            producer.flush(timeout=self.timeout)
            future.get(timeout=self.timeout)
        except Exception as exc:
            raise BrokerUnavailable(
                f"shadow withdrawal for {key!r}: not acknowledged on {self.topic!r}: {exc}"
            ) from exc
        log.info("shadow model withdrawn on %s", "every camera" if targets is None else ", ".join(targets))

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=10)
            except Exception as exc:
                log.warning("closing the models producer: %s", exc)
