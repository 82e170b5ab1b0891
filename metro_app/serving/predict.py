"""Prediction requests over Kafka: the hub answers each request on the responses topic.

One poll's requests are scored with one `predict_proba` per model, then every
response is sent and acknowledged before the offsets are committed; a failed
send rewinds the batch, so each request is answered once per delivery.
Several hub instances share the requests through the consumer group. Which
model a request's name means is a callable handed in (`ModelResolver`), so the
model registry can take over from the model file without touching this loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemnist.errors import ModelError
from edgemnist.model import Model, ensure_model, load_model, load_model_bytes
from edgemnist.prep import SHAPE, prepare_frames
from edgemnist.wire.messages import Origin
from edgemnist.wire.serving import LATEST, PredictRequest, PredictResponse, RequestError, parse_request
from metro_app.ingest.runloop import LoopHealth, rewind, run_forever

__all__ = [
    "ModelResolver",
    "PathModels",
    "RegistryModels",
    "PredictStats",
    "PredictLoop",
    "predict_group",
    "start_predictions",
]

log = logging.getLogger(__name__)

ModelResolver = Callable[[str], "Model | None"]


def predict_group(topic: str) -> str:
    """The consumer group that hub instances share for one events topic's prediction requests."""
    return f"MetroEdge-{topic}-predict"


class PathModels:
    """Resolves "latest" and the loaded model's own version to the model at `path`; nothing else.

    With no model at `path` and `train_missing`, trains the default model there first
    (`edgemnist.model.ensure_model`), so a fresh hub can answer without a manual step.
    """

    def __init__(self, path: Path | str, *, train_missing: bool = True) -> None:
        self._path = Path(path)
        self._train_missing = train_missing
        self._model: Model | None = None
        self.ready = threading.Event()

    def load(self, stop: threading.Event | None = None) -> Model | None:
        """Load (training first if allowed and needed); None when there is no usable model."""
        try:
            if self._train_missing and not _has_models(self._path) and self._path.suffix != ".skops":
                log.warning("predictions: no model in %s; training the default model there", self._path)
            path = ensure_model(self._path) if self._train_missing else self._path
            self._model = load_model(path)
            log.info("predictions: model %s from %s", self._model.version, self._model.path)
        except ModelError as exc:
            log.error("predictions: no usable model (%s); requests are answered with an error", exc)
        self.ready.set()
        return self._model

    def __call__(self, name: str) -> Model | None:
        model = self._model
        if model is None:
            return None
        return model if name in (LATEST, model.version) else None


class RegistryModels:
    """Resolves names through the hub's model registry: "latest" is the newest published model, a
    version is that registered model (verified against its sha256); the model file is the fallback
    while the registry is empty."""

    def __init__(self, store: Any, fallback: PathModels) -> None:
        self._store = store
        self._fallback = fallback
        self._loaded: dict[str, Model] = {}
        self.ready = fallback.ready

    def load(self, stop: threading.Event | None = None) -> Model | None:
        return self._fallback.load(stop)

    def _registered(self, version: str) -> Model | None:
        if version in self._loaded:
            return self._loaded[version]
        card = self._store.model(version)
        data = self._store.model_file(version) if card else None
        if not card or not data:
            return None
        try:
            model = load_model_bytes(data, expected_sha256=card["sha256"], version=version, name=version)
        except ModelError as exc:
            log.error("predictions: registered model %s refused: %s", version, exc)
            return None
        self._loaded[version] = model
        return model

    def __call__(self, name: str) -> Model | None:
        if name == LATEST:
            current = self._store.current_model()
            found = self._registered(current["version"]) if current else None
            return found or self._fallback(name)
        return self._registered(name) or self._fallback(name)


def _has_models(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*.skops"))


@dataclass
class PredictStats:
    """What this hub's prediction loop has answered since it started."""

    requests: int = 0
    answered: int = 0
    errors: int = 0
    batches: int = 0
    send_failures: int = 0
    last_batch: float | None = None
    by_model: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PredictLoop:
    """Poll requests, score them per model in one call, send responses keyed like the requests, commit."""

    def __init__(
        self,
        consumer: Any,
        producer: Any,
        resolve_model: ModelResolver,
        responses_topic: str,
        *,
        max_records: int = 500,
        poll_timeout_ms: int = 200,
        send_timeout: float = 30.0,
        retry_seconds: float = 1.0,
        ready: threading.Event | None = None,
    ) -> None:
        self._ready = ready
        self._consumer = consumer
        self._producer = producer
        self._resolve = resolve_model
        self.topic = responses_topic
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.send_timeout = send_timeout
        self.retry_seconds = retry_seconds
        self.stats = PredictStats()
        self.health = LoopHealth("predict")

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop`; a bad request gets an error response, a failed batch is retried."""
        run_forever(self.step, stop, self.retry_seconds, "prediction loop: a batch", log, health=self.health)

    def step(self) -> int:
        """Answer one polled batch; returns how many requests it answered."""
        batch = self._consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
        records = [r for recs in batch.values() for r in recs]
        if not records:
            return 0
        if self._ready is not None:
            self._ready.wait()  # a fresh hub may still be training its model; the requests wait, none is refused
        responses = self.answer(records)
        try:
            futures = [
                self._producer.send(self.topic, value=resp.to_json(), key=rec.key)
                for rec, resp in zip(records, responses, strict=True)
            ]
            self._producer.flush(timeout=self.send_timeout)
            for fut in futures:
                fut.get(timeout=self.send_timeout)
        except Exception as exc:
            self.stats.send_failures += 1
            log.warning("prediction responses not acknowledged (%s); the requests are re-read", exc)
            self._rewind(batch)
            time.sleep(self.retry_seconds)
            return 0
        try:
            self._consumer.commit()
        except Exception as exc:  # a rebalance: the batch is re-delivered and answered again
            log.warning("prediction offsets not committed (%s); requests may be answered twice", exc)
        s = self.stats
        s.requests += len(records)
        s.answered += sum(1 for r in responses if r.error is None)
        s.errors += sum(1 for r in responses if r.error is not None)
        s.batches += 1
        s.last_batch = time.time()
        return len(records)

    def answer(self, records: list[Any]) -> list[PredictResponse]:
        """One response per record, in order; each model scores its requests in one `predict_proba`."""
        out: list[PredictResponse | None] = [None] * len(records)
        groups: dict[str, tuple[Model, list[int], list[PredictRequest]]] = {}
        for i, rec in enumerate(records):
            origin = Origin(
                getattr(rec, "topic", None), getattr(rec, "partition", None), getattr(rec, "offset", None)
            )
            try:
                req = parse_request(rec.value, origin, getattr(rec, "key", None))
            except RequestError as exc:
                out[i] = PredictResponse.failed(exc.request_id, str(exc))
                continue
            except Exception as exc:  # one request the parser chokes on never takes its batch down
                log.exception("prediction request %s could not be parsed", origin)
                out[i] = PredictResponse.failed(None, f"{origin}: {type(exc).__name__}: {exc}")
                continue
            model = self._resolve(req.model)
            if model is None:
                out[i] = PredictResponse.failed(req.id, f"unknown model {req.model!r}")
                continue
            _, idx, reqs = groups.setdefault(model.version, (model, [], []))
            idx.append(i)
            reqs.append(req)
        for model, idx, reqs in groups.values():
            for i, resp in zip(idx, _score(model, reqs), strict=True):
                out[i] = resp
            self.stats.by_model[model.version] = self.stats.by_model.get(model.version, 0) + len(reqs)
        return [r if r is not None else PredictResponse.failed(None, "not answered") for r in out]

    def _rewind(self, batch: dict[Any, list[Any]]) -> None:
        rewind(self._consumer, batch)


def _score(model: Model, reqs: list[PredictRequest]) -> list[PredictResponse]:
    """Prepare the PNG frames (one vectorised batch), stack them with the pixel inputs, score once."""
    out: list[PredictResponse | None] = [None] * len(reqs)
    images = np.zeros((len(reqs), *SHAPE), np.uint8)
    good = np.zeros(len(reqs), bool)
    pngs = [i for i, r in enumerate(reqs) if r.png is not None]
    if pngs:
        try:
            parts = [(pngs, prepare_frames([reqs[i].png for i in pngs]))]  # type: ignore[misc]
        except Exception:  # the batch failed as a whole: prepare image by image, so one fails alone
            parts = []
            for i in pngs:
                try:
                    parts.append(([i], prepare_frames([reqs[i].png])))  # type: ignore[list-item]
                except Exception as exc:
                    out[i] = PredictResponse.failed(
                        reqs[i].id, f"malformed image: {type(exc).__name__}: {exc}"
                    )
        for where, prepared in parts:
            for pos, why in prepared.errors:
                out[where[pos]] = PredictResponse.failed(reqs[where[pos]].id, f"malformed image: {why}")
            for j, pos in enumerate(prepared.index):
                images[where[int(pos)]] = prepared.images[j]
                good[where[int(pos)]] = True
    for i, r in enumerate(reqs):
        if r.pixels is not None:
            images[i] = r.pixels
            good[i] = True
    rows = np.flatnonzero(good)
    if len(rows):
        proba = model.predict_proba(images[rows])
        for k, row in enumerate(rows.tolist()):
            out[row] = PredictResponse(reqs[row].id, model.version, tuple(proba[k].tolist()))
    return [
        r if r is not None else PredictResponse.failed(q.id, "not scored")
        for r, q in zip(out, reqs, strict=True)
    ]


def start_predictions(
    kafka: Any,
    requests_topic: str,
    responses_topic: str,
    group: str,
    stop: threading.Event,
    resolve_model: ModelResolver,
    ready: threading.Event | None = None,
) -> tuple[PredictLoop, threading.Thread]:
    """Consumer (in `group`) and producer for the two topics, and the loop running in a daemon thread.

    The topics are created if missing, and the consumer learns the requests topic's partitions before
    its first poll: kafka-python 3.0 can otherwise join the group before it knows the topic and sit
    with no partitions assigned.
    """
    from edgemnist.kafka import ensure_topics, make_group_consumer, make_producer

    ensure_topics(kafka, {requests_topic: 1, responses_topic: 1})
    consumer = make_group_consumer(kafka, [requests_topic], group, fetch_max_wait_ms=50)
    producer = make_producer(kafka, linger_ms=1)
    loop = PredictLoop(consumer, producer, resolve_model, responses_topic, ready=ready)

    def run() -> None:
        try:
            loop.run(stop)
        finally:
            for closing in (lambda: consumer.close(autocommit=False), lambda: producer.close(timeout=10)):
                try:
                    closing()
                except Exception as exc:
                    log.warning("closing the prediction loop's Kafka client: %s", exc)

    thread = threading.Thread(target=run, name="predict-loop", daemon=True)
    thread.start()
    log.info("predictions: requests %s -> responses %s, group %s", requests_topic, responses_topic, group)
    return loop, thread
