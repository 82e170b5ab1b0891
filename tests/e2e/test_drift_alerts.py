"""Drift alerts end to end on real Apache Kafka: three streaming cameras, one restarted rotated 30 degrees.

The restarted camera (same name, same outbox) must raise a drift alert within a bounded number of
its windows, visible on /cameras and once on the alerts topic; the two undisturbed cameras must
raise none during the whole test.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgemnist.kafka import ensure_topics
from metro_app.testing import HubProcess, wait_until
from tests.helpers import read_topic, stop_processes

pytestmark = pytest.mark.e2e

CAMERAS = ("DriftA", "DriftB", "DriftC")
DISTURBED = "DriftB"
MAX_DELAY_WINDOWS = 6  # windows of the rotated camera from its first one to the one that raised the alert


def _edge(cam: str, kafka, topic: str, model: Path, tmp: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "edge_app.cli", "run", "--camera", cam,
        "--source", "bundled", "--repeat", "0", "--delay", "0.004", "--metrics-duration", "1",
        "--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic, "--model", str(model),
        "--outbox", str(tmp / f"{cam}.db"), "--models-topic", f"{topic}.models", *extra,
    ]  # fmt: skip
    log = open(tmp / f"edge-{cam}.log", "ab")  # noqa: SIM115 - the child keeps it open
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def _windows(hub: HubProcess, camera: str) -> list[dict]:
    items = hub.client.fetch_all("ClassificationMetrics")
    return [it["tuple"] for it in items if camera in it["tuple"]["camera_metrics"]]


def test_a_camera_rotated_mid_run_raises_one_drift_alert_and_the_others_none(
    kafka, kafka_settings, model_path, tmp_path, make_topic
):
    topic = make_topic("events")
    ensure_topics(kafka_settings, {topic: 1})
    hub = HubProcess(
        kafka.bootstrap_servers, topic, f"sqlite:///{tmp_path}/hub.db", tmp_path / "hub.log",
        extra=["--model", str(model_path)],
    ).start()  # fmt: skip
    host = socket.gethostname()
    names = {c: f"{c}-{host}" for c in CAMERAS}
    edges = {c: _edge(c, kafka, topic, model_path, tmp_path) for c in CAMERAS}
    try:
        # a steady baseline: every camera has sent enough windows for its detector to be armed
        wait_until(
            lambda: all(len(_windows(hub, n)) >= 15 for n in names.values()),
            120, f"15 windows from each camera ({tmp_path})",
        )  # fmt: skip
        assert hub.client.alerts() == []
        stop_processes([edges[DISTURBED]])
        before = {w["id"] for w in _windows(hub, names[DISTURBED])}
        edges[DISTURBED] = _edge(DISTURBED, kafka, topic, model_path, tmp_path, "--distort", "rotate:30")

        def drift_alert() -> list[dict]:
            cams = {c["name"]: c for c in hub.client.cameras()}
            return [
                a for a in cams[names[DISTURBED]]["alerts"] if a["signal"] in ("uncertain_share", "accuracy")
            ]

        [alert, *_] = wait_until(drift_alert, 90, f"a drift alert on {names[DISTURBED]} in /cameras")
        rotated = [w for w in _windows(hub, names[DISTURBED]) if w["id"] not in before]
        ids = [w["id"] for w in rotated]
        delay = ids.index(alert["evidence"]["detected_window"]) + 1
        assert delay <= MAX_DELAY_WINDOWS, (delay, alert)
        assert alert["camera"] == names[DISTURBED] and alert["status"] == "open"
        assert alert["evidence"]["after_mean"] - alert["evidence"]["before_mean"] != 0
        if alert["signal"] == "uncertain_share":
            assert alert["evidence"]["before_mean"] < 0.08 and alert["evidence"]["after_mean"] > 0.12
        assert (
            alert["started"] >= rotated[0]["timestamp"]
            or delay == 1
            or alert["started"] in {w["timestamp"] for w in rotated}
        )
        # on the alerts topic, once per alert
        msgs = read_topic(
            kafka_settings, f"{topic}.alerts", lambda m: any(x["key"] == alert["key"] for x in m),
            timeout=60, parse=json.loads, settle=3.0,
        )  # fmt: skip
        mine = [m for m in msgs if m["key"] == alert["key"]]
        assert len(mine) == 1 and mine[0]["type"] == "alert" and mine[0]["camera"] == names[DISTURBED]
        assert mine[0]["evidence"]["detected_window"] == alert["evidence"]["detected_window"]
        # the undisturbed cameras keep streaming a few more windows, and raise nothing, ever
        counts = {c: len(_windows(hub, names[c])) for c in CAMERAS if c != DISTURBED}
        wait_until(
            lambda: all(len(_windows(hub, names[c])) >= n + 5 for c, n in counts.items()),
            60, "5 more windows from the undisturbed cameras",
        )  # fmt: skip
        every = hub.client.alerts()
        assert {a["camera"] for a in every} == {names[DISTURBED]}, every
        assert {m["camera"] for m in read_topic(kafka_settings, f"{topic}.alerts", lambda m: False,
                                                 timeout=3, parse=json.loads)} == {names[DISTURBED]}  # fmt: skip
        cams = {c["name"]: c for c in hub.client.cameras()}
        assert all(cams[names[c]]["alerts"] == [] for c in CAMERAS if c != DISTURBED)
        assert hub.health()["consumer"]["alerts"]["alive"]
    finally:
        for proc in edges.values():
            stop_processes([proc])
        hub.stop()
