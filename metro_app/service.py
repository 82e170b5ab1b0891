"""`metro-app run`: the hub loop and the control loop in threads, the HTTP API in the foreground.

Only this module reaches for Kafka, and only through `edgemnist.kafka`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from edgemnist.errors import ConfigError, EdgeMnistError
from metro_app.access import AccessGate, TokenFile
from metro_app.api.app import create_app
from metro_app.ingest.control import ControlLoop, control_group_id
from metro_app.ingest.loop import HUB_CONSUMER_CONFIG, DeadLetterSink, HubLoop, group_id
from metro_app.monitoring.alerts import AlertMonitor
from metro_app.monitoring.prometheus import HubMetrics
from metro_app.retention import Pruner
from metro_app.rollout.publish import ModelPublisher, load_signing_key
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
from metro_app.store.leases import holder_id
from metro_app.store.requests import RetrainRequests
from metro_app.training.auto import AutoPolicy, AutoRetrain
from metro_app.training.jobs import CommandRetrains, RetrainJobs
from metro_app.training.retrain import Progress, RetrainSettings, register_initial_model, retrain

__all__ = ["open_kafka", "open_control", "run_hub", "access_gate", "api_server"]

log = logging.getLogger("metro_app")
# How long a thread holding the GIL runs before a waiting one gets it (Python's default: 5 ms). The hub's
# ingest thread is busy while a fleet sends; a view request hands the GIL back at every database
# round trip and would wait up to the interval to get it again each time. bench/fleet.py, 10,000
# cameras, one hub: /cameras p99 575 ms at 5 ms, 404 ms at 0.5 ms on the same loaded machine. The
# ingest loop alone moves either way by up to a fifth (docs/benchmarks.md, Fleet, has the runs).
GIL_SWITCH_INTERVAL = 0.0005


def open_kafka(kafka: Any, settings: HubSettings) -> tuple[Any, Any]:
    """The hub's consumer (group MetroEdge-<topic>, manual commits, from the earliest offset) and producer.

    An API hub (`--no-ingest`) gets no consumer (None): only the producer, for the control topic's
    dead letters and alerts.
    """
    from edgemnist.kafka import ensure_topics, make_group_consumer, make_producer, wait_for_broker

    wait_for_broker(kafka, 120)
    if not settings.ingest:
        return None, make_producer(kafka)
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
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    gate = access_gate(settings)
    store = Store(settings.store_url)
    _register_first_model(store, retrain_settings.model)
    consumer, producer = open_kafka(kafka, settings)
    dead = DeadLetterSink(producer, settings.dlq_topic)
    metrics = HubMetrics(store)
    loop = (
        HubLoop(consumer, store, dead, max_records=settings.max_records, on_write=metrics.observe_write)
        if consumer is not None
        else None
    )
    signing_key = load_signing_key(settings.signing_key)
    publisher = (
        ModelPublisher(kafka, settings.models_topic, signing_key=signing_key)
        if settings.models_topic
        else None
    )
    jobs = _retrain_jobs(store, retrain_settings, publisher)
    stop = threading.Event()
    threads = (
        [
            threading.Thread(
                target=_consume, args=(loop, stop, consumer, producer), name="hub-loop", daemon=True
            )
        ]
        if loop is not None
        else []
    )
    sender = _alert_sender(kafka, producer, settings.alerts_topic)
    alerts = AlertMonitor(store, settings.drift, sender, lease=store.lease("alerts"))  # one hub of several
    alert_thread = threading.Thread(target=alerts.run, args=(stop,), name="hub-alerts", daemon=True)
    control = _control(kafka, settings, store, dead, jobs, stop, threads)
    rollouts = RolloutWatcher(store, publisher) if publisher is not None else None
    if rollouts is not None:  # acts only while this hub holds the store's lease
        threads.append(threading.Thread(target=rollouts.run, args=(stop,), name="hub-rollouts", daemon=True))
    auto = _auto_retrain(settings, store, jobs, retrain_settings, publisher)
    if auto is not None:
        threads.append(threading.Thread(target=auto.run, args=(stop,), name="hub-auto-retrain", daemon=True))
    predictions = _predictions(kafka, settings, store, stop)
    pruner = _pruner(settings, store, threads, stop)
    parts = _Parts(
        loop, threads, control, jobs, predictions, rollouts, alerts, alert_thread,
        store.retrain_requests() if control is not None else None, auto, pruner=pruner,
    )  # fmt: skip
    app = create_app(
        store, gate=gate, health=_health(settings, parts), retrain=jobs,
        rollout_policy=retrain_settings.policy(), signing_key=signing_key,
        metrics=metrics.watch(loop=loop, jobs=jobs, pruner=pruner),
    )  # fmt: skip
    server = api_server(app, settings)
    for thread in threads:
        thread.start()
    alert_thread.start()
    log.info(
        "hub: %r, Kafka %s, %s; API on %s://%s:%d",
        settings,
        kafka.masked(),
        f"group {group_id(settings.topic)}" if loop is not None else "no events consumer (--no-ingest)",
        "https" if settings.tls_cert else "http",
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
        if loop is None:  # an ingesting hub's loop thread closes the producer it shares
            try:
                producer.close(timeout=10)
            except Exception as exc:
                log.warning("closing Kafka client: %s", exc)
        store.close()
    return 0 if server.started else 1


def _register_first_model(store: Store, model: str) -> None:
    """The model the cameras start with shows in the registry (status serving) from the hub's start.

    Only a model file already there is registered (training one is left to retrain or the
    prediction loop, so the API starts at once).
    """
    try:
        register_initial_model(store, model, train=False)
    except EdgeMnistError as exc:  # the hub still stores and serves views; retrain says it again
        log.warning("the first model %s is not in the registry: %s", model, exc)


def _auto_retrain(
    settings: HubSettings,
    store: Store,
    jobs: RetrainJobs,
    retrain_settings: RetrainSettings,
    publisher: ModelPublisher | None,
) -> AutoRetrain | None:
    """The auto-retrain loop with --auto-retrain (one hub of several acts, by lease), else None."""
    if not settings.auto_retrain:
        return None
    if publisher is None:
        raise ConfigError("--auto-retrain needs a models topic to roll its candidates out on")

    def run(chosen: RetrainSettings, progress: Progress) -> Any:
        return retrain(store, chosen, publisher=publisher, on_progress=progress)

    policy = AutoPolicy(settings.auto_retrain_labels, settings.auto_retrain_drift_labels)
    log.info("auto-retrain on: %d new labels, or %d on a drifting camera", policy.labels, policy.drift_labels)
    return AutoRetrain(store, jobs, retrain_settings, run, policy)


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
        running = jobs.running()
        log.info("control command %r recorded%s", name, f"; it runs after job {running}" if running else "")

    # requests are in the store before their offsets are committed; this runs them, and those a
    # stopped hub left, after every control poll
    retrains = CommandRetrains(jobs, store.retrain_requests(), holder_id())
    control_consumer = open_control(kafka, settings.control_topic)
    control = ControlLoop(control_consumer, store, dead, on_command, after_batch=retrains.serve)
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


def _pruner(
    settings: HubSettings, store: Store, threads: list[threading.Thread], stop: threading.Event
) -> Pruner | None:
    """The retention loop, its thread appended to `threads`; None with --retention off."""
    policy = settings.retention_policy
    log.info(policy.describe())
    if not policy.enabled:
        return None
    pruner = Pruner(store, policy)
    threads.append(threading.Thread(target=pruner.run, args=(stop,), name="hub-retention", daemon=True))
    return pruner


@dataclass(frozen=True, slots=True)
class _Parts:
    """The running pieces of the hub that /health reports on."""

    loop: HubLoop | None  # None: an API hub (--no-ingest)
    threads: list[threading.Thread]
    control: ControlLoop | None
    jobs: RetrainJobs
    predictions: PredictLoop | None
    rollouts: RolloutWatcher | None
    alerts: AlertMonitor
    alert_thread: threading.Thread
    requests: RetrainRequests | None = None  # retrain requests from the control topic
    auto: AutoRetrain | None = None  # --auto-retrain
    pruner: Pruner | None = None  # None: --retention off


def _alive(parts: _Parts, name: str) -> bool:
    """Whether the loop thread called `name` runs (the threads list's order depends on the settings)."""
    return any(t.name == name and t.is_alive() for t in parts.threads)


def _health(settings: HubSettings, parts: _Parts) -> Callable[[], dict[str, Any]]:
    """The hub's /health body: the loops' counts and whether their threads are alive."""

    def health() -> dict[str, Any]:
        control, predictions, rollouts = parts.control, parts.predictions, parts.rollouts
        return {
            **(parts.loop.stats.as_dict() if parts.loop is not None else {}),
            "ingest": parts.loop is not None,
            "alive": _alive(parts, "hub-loop") if parts.loop is not None else None,  # None: no events loop
            "group": group_id(settings.topic),
            "topic": settings.topic,
            "dlq_topic": settings.dlq_topic,
            "models_topic": settings.models_topic,
            "control_topic": settings.control_topic,
            "control": None if control is None else {**control.stats, "alive": _alive(parts, "hub-control")},
            "retrain_running": parts.jobs.running(),
            "retrain_requests": None if parts.requests is None else parts.requests.counts(),
            "predict": predictions.stats.as_dict() if predictions else None,
            "rollouts": None if rollouts is None else dict(rollouts.stats),
            "auto_retrain": None if parts.auto is None else dict(parts.auto.stats),
            "alerts_topic": settings.alerts_topic,
            "alerts": {**parts.alerts.stats, "alive": parts.alert_thread.is_alive()},
            "retention": None
            if parts.pruner is None
            else {**parts.pruner.as_dict(), "alive": _alive(parts, "hub-retention")},
            "loops": {
                h.name: h.as_dict()
                for h in (
                    getattr(parts.loop, "health", None),
                    getattr(control, "health", None),
                    getattr(predictions, "health", None),
                    getattr(parts.alerts, "health", None),
                    getattr(rollouts, "health", None),
                    getattr(parts.auto, "health", None),
                    getattr(parts.pruner, "health", None),
                )
                if h is not None
            },  # fmt: skip
        }

    return health


_MOVE_TO_TOKENS = (
    "the API has one shared token (EDGE_MNIST_API_TOKEN): whoever holds it is the operator 'default' "
    "and labels keep the labeller their body names, unverified. Give each person a token and a role: "
    "metro-app tokens add NAME --role viewer|labeller|operator --file FILE, then metro-app run --tokens FILE"
)


def access_gate(settings: HubSettings) -> AccessGate:
    """Who may use the API: the tokens file when one is given, else the single token; warns as it goes."""
    if settings.tokens:
        tokens = TokenFile(Path(settings.tokens))
        if settings.api_token:
            log.warning("--tokens %s is given: EDGE_MNIST_API_TOKEN is ignored by the hub", settings.tokens)
        log.info(
            "API access: %d people from %s; reads %s",
            len(tokens.book()), settings.tokens, "open" if settings.public_reads else "need a viewer token",
        )  # fmt: skip
        return AccessGate(tokens=tokens, public_reads=settings.public_reads)
    if settings.public_reads:
        log.warning("--public-reads has no effect without --tokens: reads are open with the single token")
    if settings.api_token:
        log.warning(_MOVE_TO_TOKENS)
    else:
        log.warning("no API token (EDGE_MNIST_API_TOKEN or --tokens): every write on the API is refused")
    return AccessGate(token=settings.api_token)


def _tls_files(settings: HubSettings) -> dict[str, str]:
    """uvicorn's ssl_certfile/ssl_keyfile, each checked readable; {} for plain HTTP."""
    if not settings.tls_cert:
        return {}
    for flag, name in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
        try:
            Path(name).open("rb").close()
        except OSError as exc:
            raise ConfigError(f"{flag} {name}: cannot read it ({exc.strerror})") from exc
    return {"ssl_certfile": settings.tls_cert, "ssl_keyfile": settings.tls_key}


def api_server(app: Any, settings: HubSettings) -> uvicorn.Server:
    """The API's uvicorn server on the settings' host and port, HTTPS with --tls-cert/--tls-key."""
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            **_tls_files(settings),  # type: ignore[arg-type]
        )
    )
