"""`metro-app run`: the hub loop in a thread and the HTTP API in the foreground.

Only this module reaches for Kafka, and only through `edgemnist.kafka`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import uvicorn

from metro_app.api import create_app
from metro_app.consumer import DeadLetterSink, HubLoop, group_id
from metro_app.predict import PathModels, predict_group, start_predictions
from metro_app.settings import HubSettings
from metro_app.store import Store

__all__ = ["open_kafka", "run_hub"]

log = logging.getLogger("metro_app")


def open_kafka(kafka: Any, settings: HubSettings) -> tuple[Any, Any]:
    """The hub's consumer (group MetroEdge-<topic>, manual commits, from the earliest offset) and producer."""
    from edgemnist.kafka import ensure_topics, make_consumer, make_producer, wait_for_broker

    wait_for_broker(kafka, 120)
    ensure_topics(kafka, {settings.topic: 1, settings.dlq_topic: 1})
    consumer = make_consumer(
        kafka,
        [settings.topic],
        group_id(settings.topic),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    return consumer, make_producer(kafka)


def _consume(loop: HubLoop, stop: threading.Event, consumer: Any, producer: Any) -> None:
    try:
        loop.run(stop)
    finally:
        for closing in (lambda: consumer.close(autocommit=False), lambda: producer.close(timeout=10)):
            try:
                closing()
            except Exception as exc:
                log.warning("closing Kafka client: %s", exc)


def run_hub(settings: HubSettings, kafka: Any) -> int:
    """Consume, store and serve until SIGINT/SIGTERM; returns the exit status."""
    store = Store(settings.store_url)
    consumer, producer = open_kafka(kafka, settings)
    loop = HubLoop(
        consumer, store, DeadLetterSink(producer, settings.dlq_topic), max_records=settings.max_records
    )
    stop = threading.Event()
    predictions = None
    if settings.predict_requests:  # the model registry can replace PathModels as the resolver
        models = PathModels(settings.model, train_missing=settings.train_model)
        threading.Thread(target=models.load, args=(stop,), name="predict-model", daemon=True).start()
        predictions, _ = start_predictions(
            kafka, settings.predict_requests, settings.predict_responses,
            predict_group(settings.topic), stop, models, models.ready,
        )  # fmt: skip
    worker = threading.Thread(
        target=_consume, args=(loop, stop, consumer, producer), name="hub-loop", daemon=True
    )

    def health() -> dict[str, Any]:
        return {
            **loop.stats.as_dict(),
            "alive": worker.is_alive(),
            "group": group_id(settings.topic),
            "topic": settings.topic,
            "dlq_topic": settings.dlq_topic,
            "predict": predictions.stats.as_dict() if predictions else None,
        }

    app = create_app(store, token=settings.api_token, health=health)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    worker.start()
    log.info(
        "hub: %r, Kafka %s, group %s; API on http://%s:%d",
        settings,
        kafka.masked(),
        group_id(settings.topic),
        settings.host,
        settings.port,
    )
    try:
        server.run()
    finally:
        stop.set()
        worker.join(timeout=30)
        store.close()
    return 0 if server.started else 1
