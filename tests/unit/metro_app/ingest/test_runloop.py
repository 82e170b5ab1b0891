"""Loop health: a loop stuck on one record past its period reports itself, and /health says degraded."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from metro_app.api import create_app
from metro_app.ingest.runloop import LoopHealth, run_forever
from metro_app.monitoring.alerts import AlertMonitor
from metro_app.monitoring.drift import DriftSettings
from metro_app.rollout.watcher import RolloutWatcher
from metro_app.store import Store


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_loop_failing_on_one_record_longer_than_its_period_is_stuck():
    clock = Clock()
    health = LoopHealth("control", period=30.0, clock=clock)
    stop = threading.Event()
    calls = []

    def step():
        calls.append(clock.t)
        clock.t += 20.0
        if len(calls) >= 3:
            stop.set()
        raise RuntimeError("the same record again")

    run_forever(step, stop, 0.0, "control loop: a batch", __import__("logging").getLogger("t"), health=health)
    assert health.stuck(clock()) == 60.0  # no progress since the first failed step began
    assert health.as_dict(clock())["stuck_seconds"] == 60.0


def test_a_loop_making_progress_is_not_stuck():
    clock = Clock()
    health = LoopHealth("hub", period=30.0, clock=clock)
    stop = threading.Event()

    def step():
        clock.t += 20.0
        stop.set()
        return 1

    run_forever(step, stop, 0.0, "hub loop", __import__("logging").getLogger("t"), health=health)
    assert health.stuck(clock()) is None


def test_health_says_degraded_naming_the_stuck_loop(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    try:
        figures = {
            "loops": {"hub": {"stuck_seconds": None}, "control": {"stuck_seconds": 95.0, "period": 30.0}}
        }
        with TestClient(create_app(store, token="t", health=lambda: figures)) as c:
            h = c.get("/health").json()
        assert h["status"] == "degraded" and h["degraded"] == ["control"]
        with TestClient(
            create_app(store, token="t", health=lambda: {"loops": {"hub": {"stuck_seconds": None}}})
        ) as c:
            assert c.get("/health").json()["status"] == "ok"
    finally:
        store.close()


def test_the_alert_loop_and_the_rollout_watcher_report_when_stuck(store):
    """Issue 24: /health said ok with alerts alive while the alert loop was frozen on one window."""
    clock = Clock()
    watcher = RolloutWatcher(store, None, interval=0.0)  # type: ignore[arg-type]
    for loop in (AlertMonitor(store, DriftSettings()), watcher):
        name = loop.health.name
        loop.health = LoopHealth(name, period=30.0, clock=clock)
        stop = threading.Event()
        calls = []

        def stuck(calls=calls, stop=stop):
            calls.append(clock.t)
            clock.t += 20.0
            if len(calls) >= 3:
                stop.set()
            raise RuntimeError("frozen on one window")

        if isinstance(loop, AlertMonitor):
            loop.step = stuck  # type: ignore[method-assign]
            loop.run(stop, interval=0.0)
        else:
            loop.tick = stuck  # type: ignore[method-assign]
            loop.run(stop)
        assert loop.health.stuck(clock()) == 60.0, name
