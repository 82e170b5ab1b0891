"""`metro-app run`: the hub loop and the control loop in threads, the HTTP API in the foreground.

Only this module reaches for Kafka, and only through `edgemnist.kafka`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

from metro_app.api.app import create_app
from metro_app.ingest.control import ControlLoop, control_group_id
from metro_app.ingest.loop import HUB_CONSUMER_CONFIG, DeadLetterSink, HubLoop, group_id
from metro_app.monitoring.alerts import AlertMonitor
from metro_app.rollout.publish import ModelPublisher
from metro_app.rollout.watcher import RolloutWatcher
from metro_app.serving.predict import (
    PathModels,
    PredictLoop,
    RegistryModels,
    predict_group,
    start_predictions,
)
from metro_app.settings import HubSettings
from metro_app.store import Store
from metro_app.training.jobs import RetrainJobs
from metro_app.training.retrain import Progress, RetrainSettings, retrain

__all__ = ["open_kafka", "open_control", "run_hub"]

log = logging.getLogger("metro_app")


def open_kafka(kafka: Any, settings: HubSettings) -> tuple[Any, Any]:
    """The hub's consumer (group MetroEdge-<topic>, manual commits, from the earliest offset) and producer."""
    from edgemnist.kafka import ensure_topics, make_group_consumer, make_producer, wait_for_broker

    wait_for_broker(kafka, 120)
    ensure_topics(kafka, {settings.topic: 1, settings.dlq_topic: 1})
    consumer = make_group_consumer(
        kafka, [settings.topic], group_id(settings.topic), client=settings.kafka_client, **HUB_CONSUMER_CONFIG
    )
    log.info("events consumer: %s on %s", settings.kafka_client, settings.topic)
    return consumer, make_producer(kafka)


def open_control(kafka: Any, topic: str, timeout: float = 30.0) -> Any:
    """A consumer of the control topic in its own group, with the topic's partitions known before it polls.

    kafka-python 3.0.12 can join the group before its metadata names a topic created
    moments ago and then sit with no partitions; `make_group_consumer` asks for them first
    and recreates a consumer left with none.
    """
    from edgemnist.kafka import ensure_topics, make_group_consumer

    ensure_topics(kafka, {topic: 1})
    return make_group_consumer(
        kafka, [topic], control_group_id(topic), auto_offset_reset="earliest", fetch_max_wait_ms=200,
        metadata_timeout=timeout,
    )  # fmt: skip


def _consume(loop: Any, stop: threading.Event, consumer: Any, producer: Any | None) -> None:
    try:
        loop.run(stop)
    finally:
        closers = [lambda: consumer.close(autocommit=False)]
        if producer is not None:
            closers.append(lambda: producer.close(timeout=10))
        for closing in closers:
            try:
                closing()
            except Exception as exc:
                log.warning("closing Kafka client: %s", exc)


def _alert_sender(kafka: Any, producer: Any, topic: str) -> Any:
    """(key, value) -> None that waits for the broker's ack; None when no alerts topic is set."""
    if not topic:
        return None
    from edgemnist.kafka import ensure_topics

    ensure_topics(kafka, {topic: 1})

    def publish(key: bytes, value: bytes) -> None:
        producer.send(topic, value=value, key=key).get(timeout=30)

    return publish


def run_hub(settings: HubSettings, kafka: Any, retrain_settings: RetrainSettings | None = None) -> int:
    """Consume, store and serve until SIGINT/SIGTERM; returns the exit status."""
    retrain_settings = retrain_settings or RetrainSettings()
    store = Store(settings.store_url)
    consumer, producer = open_kafka(kafka, settings)
    dead = DeadLetterSink(producer, settings.dlq_topic)
    loop = HubLoop(consumer, store, dead, max_records=settings.max_records)
    publisher = ModelPublisher(kafka, settings.models_topic) if settings.models_topic else None
    jobs = _retrain_jobs(store, retrain_settings, publisher)
    stop = threading.Event()
    threads = [
        threading.Thread(target=_consume, args=(loop, stop, consumer, producer), name="hub-loop", daemon=True)
    ]
    alerts = AlertMonitor(store, settings.drift, _alert_sender(kafka, producer, settings.alerts_topic))
    alert_thread = threading.Thread(target=alerts.run, args=(stop,), name="hub-alerts", daemon=True)
    control = _control(kafka, settings, store, dead, jobs, stop, threads)
    rollouts = RolloutWatcher(store, publisher) if publisher is not None else None
    if rollouts is not None:  # acts only while this hub holds the store's lease
        threads.append(threading.Thread(target=rollouts.run, args=(stop,), name="hub-rollouts", daemon=True))
    predictions = _predictions(kafka, settings, store, stop)
    parts = _Parts(loop, threads, control, jobs, predictions, rollouts, alerts, alert_thread)
    app = create_app(
        store, token=settings.api_token, health=_health(settings, parts), retrain=jobs,
        rollout_policy=retrain_settings.policy(),
    )  # fmt: skip
    server = _api_server(app, settings)
    for thread in threads:
        thread.start()
    alert_thread.start()
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
        for thread in [*threads, alert_thread]:
            thread.join(timeout=30)
        jobs.join(timeout=60)
        if publisher is not None:
            publisher.close()
        store.close()
    return 0 if server.started else 1


def _retrain_jobs(
    store: Store, retrain_settings: RetrainSettings, publisher: ModelPublisher | None
) -> RetrainJobs:
    """One retrain at a time in a background thread, for the API and the control topic."""

    def run_retrain(progress: Progress) -> Any:
        return retrain(store, retrain_settings, publisher=publisher, on_progress=progress)

    return RetrainJobs(run_retrain)


def _control(
    kafka: Any,
    settings: HubSettings,
    store: Store,
    dead: DeadLetterSink,
    jobs: RetrainJobs,
    stop: threading.Event,
    threads: list[threading.Thread],
) -> ControlLoop | None:
    """The control-topic loop, its thread appended to `threads`; None when no control topic is set."""
    if not settings.control_topic:
        return None

    def on_command(name: str) -> None:
        job, started = jobs.start(f"control topic {settings.control_topic}")
        log.info(
            "control command %r: %s job %s", name, "started" if started else "already running", job["id"]
        )

    control_consumer = open_control(kafka, settings.control_topic)
    control = ControlLoop(control_consumer, store, dead, on_command)
    threads.append(
        threading.Thread(
            target=_consume, args=(control, stop, control_consumer, None), name="hub-control", daemon=True
        )
    )
    return control


def _predictions(
    kafka: Any, settings: HubSettings, store: Store, stop: threading.Event
) -> PredictLoop | None:
    """Answer prediction requests in the background; None when no requests topic is set."""
    if not settings.predict_requests:
        return None
    models = RegistryModels(store, PathModels(settings.model, train_missing=settings.train_model))
    threading.Thread(target=models.load, args=(stop,), name="predict-model", daemon=True).start()
    predictions, _ = start_predictions(
        kafka, settings.predict_requests, settings.predict_responses,
        predict_group(settings.topic), stop, models, models.ready,
    )  # fmt: skip
    return predictions


@dataclass(frozen=True, slots=True)
class _Parts:
    """The running pieces of the hub that /health reports on."""

    loop: HubLoop
    threads: list[threading.Thread]
    control: ControlLoop | None
    jobs: RetrainJobs
    predictions: PredictLoop | None
    rollouts: RolloutWatcher | None
    alerts: AlertMonitor
    alert_thread: threading.Thread


def _alive(parts: _Parts, name: str) -> bool:
    """Whether the loop thread called `name` runs (the threads list's order depends on the settings)."""
    return any(t.name == name and t.is_alive() for t in parts.threads)


def _health(settings: HubSettings, parts: _Parts) -> Callable[[], dict[str, Any]]:
    """The hub's /health body: the loops' counts and whether their threads are alive."""

    def health() -> dict[str, Any]:
        control, predictions, rollouts = parts.control, parts.predictions, parts.rollouts
        return {
            **parts.loop.stats.as_dict(),
            "alive": parts.threads[0].is_alive(),
            "group": group_id(settings.topic),
            "topic": settings.topic,
            "dlq_topic": settings.dlq_topic,
            "models_topic": settings.models_topic,
            "control_topic": settings.control_topic,
            "control": None if control is None else {**control.stats, "alive": _alive(parts, "hub-control")},
            "retrain_running": parts.jobs.running(),
            "predict": predictions.stats.as_dict() if predictions else None,
            "rollouts": None if rollouts is None else dict(rollouts.stats),
            "alerts_topic": settings.alerts_topic,
            "alerts": {**parts.alerts.stats, "alive": parts.alert_thread.is_alive()},
        }

    return health


def _api_server(app: Any, settings: HubSettings) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
