"""Drift detectors on synthetic window sequences, and the alert loop over a real (SQLite) store."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from edgemnist.errors import ConfigError
from edgemnist.wire.messages import utc_timestamp
from metro_app.monitoring.alerts import AlertMonitor
from metro_app.monitoring.drift import CameraDrift, DriftSettings, change_point
from metro_app.samples import make_image
from metro_app.testing import WINDOW_T0, metrics_window


def noisy(rng, n, images, share) -> list[int]:
    return [int(x) for x in rng.binomial(images, share, size=n)]


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
def test_a_step_in_the_uncertain_share_is_detected_within_a_few_windows(detector):
    rng = np.random.default_rng(1)
    drift = CameraDrift("A", DriftSettings(detector=detector))
    before, after = noisy(rng, 40, 250, 0.02), noisy(rng, 20, 250, 0.2)
    changes = []
    for n, u in enumerate(before):
        assert drift.add(metrics_window("A", n, 250, u).to_dict()) == []
    for k, u in enumerate(after):
        changes += [(k + 1, c) for c in drift.add(metrics_window("A", 40 + k, 250, u).to_dict())]
    worse = [(k, c) for k, c in changes if c.worse]
    assert worse, changes
    delay, change = worse[0]
    assert delay <= {"adwin": 2, "page_hinkley": 5}[detector]
    assert change.signal == "uncertain_share" and change.camera == "A"
    assert change.started == utc_timestamp(WINDOW_T0 + 40)  # the first window after the change
    assert change.before_mean == pytest.approx(0.02, abs=0.01) and change.after_mean > 0.15
    assert change.before_windows == 40 and change.after_windows == delay
    assert change.key == f"A|uncertain_share|A/r1/m{40 + delay - 1}"


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
@pytest.mark.parametrize(("images", "share"), [(250, 0.02), (250, 0.3), (50, 0.1), (20, 0.05)])
def test_steady_noise_raises_no_alert_in_2000_windows(detector, images, share):
    rng = np.random.default_rng(7)
    drift = CameraDrift("A", DriftSettings(detector=detector))
    alerts = []
    for n, u in enumerate(noisy(rng, 2000, images, share)):
        correct = images - int(rng.binomial(images, 0.05))
        alerts += [c for c in drift.add(metrics_window("A", n, images, u, correct).to_dict()) if c.worse]
    assert alerts == []


def test_a_fall_in_live_accuracy_is_detected_and_a_rise_is_not_an_alert():
    rng = np.random.default_rng(3)
    drift = CameraDrift("A", DriftSettings())
    got = []
    for n in range(60):
        acc = 0.97 if n < 30 else 0.70 if n < 45 else 0.97
        got += drift.add(metrics_window("A", n, 200, 4, int(rng.binomial(200, acc))).to_dict())
    acc_changes = [c for c in got if c.signal == "accuracy"]
    assert acc_changes[0].worse and acc_changes[0].after_mean < 0.8
    assert any(not c.worse and c.after_mean > 0.9 for c in acc_changes[1:])  # the recovery


def test_small_windows_are_pooled_and_a_model_change_resets_the_detectors():
    drift = CameraDrift("A", DriftSettings(min_images=50))
    for n in range(4):
        drift.add(metrics_window("A", n, 20, 1).to_dict())
    sig = drift.signals["uncertain_share"]
    assert len(sig.history) == 1 and sig.history[0][1].windows == 3  # 3 x 20 >= 50; the 4th waits
    drift.add(metrics_window("A", 4, 20, 1, model="m2").to_dict())
    assert len(sig.history) == 0 and drift.model_version == "m2"


def test_change_point_and_settings_errors_name_the_flag():
    assert change_point([0.0] * 10 + [1.0] * 3) == 10
    with pytest.raises(ConfigError, match="--drift-detector"):
        DriftSettings(detector="cusum")
    with pytest.raises(ConfigError, match="--camera-error-share"):
        DriftSettings(camera_error_share=0)


def _stream(store, rng, camera, start, n, share, images=250):
    msgs = [metrics_window(camera, start + k, images, u) for k, u in enumerate(noisy(rng, n, images, share))]
    store.write_batch(msgs, [])


def test_the_alert_loop_raises_once_sends_once_and_a_restart_replays_to_the_same_alerts(store):
    sent = []
    rng = np.random.default_rng(5)
    for cam in ("A", "B", "C"):
        _stream(store, rng, cam, 0, 30, 0.02)
    monitor = AlertMonitor(store, DriftSettings(), lambda k, v: sent.append((k, json.loads(v))))
    monitor.step()
    assert store.alerts() == [] and sent == []
    _stream(store, rng, "B", 30, 10, 0.25)
    for cam in ("A", "C"):
        _stream(store, rng, cam, 30, 10, 0.02)
    monitor.step()
    monitor.step()
    alerts = store.alerts()
    signals = {(a["camera"], a["signal"]) for a in alerts}
    assert ("B", "uncertain_share") in signals and all(cam == "B" for cam, _ in signals)
    [drift] = [a for a in alerts if a["signal"] == "uncertain_share"]
    assert drift["status"] == "open" and drift["started"] == utc_timestamp(WINDOW_T0 + 30)
    assert drift["evidence"]["before_mean"] < 0.05 < 0.2 < drift["evidence"]["after_mean"]
    assert [m["key"] for k, m in sent] == [a["key"] for a in reversed(alerts)] and {k for k, _ in sent} == {
        b"B"
    }
    assert sent[0][1]["type"] == "alert" and sent[0][1]["camera"] == "B"
    # a restarted hub replays the store into new detectors: nothing new is raised or sent
    again = AlertMonitor(store, DriftSettings(), lambda k, v: sent.append((k, v)))
    again.step()
    assert len(store.alerts()) == len(alerts) and len(sent) == len(alerts)
    assert again.stats["windows"] == 120


def test_of_two_hubs_on_one_store_only_the_lease_holder_reads_windows_and_the_other_takes_over(store):
    """K hubs would replay every window K times for the same alerts: the one holding the lease does."""
    rng = np.random.default_rng(5)
    for cam in ("A", "B"):
        _stream(store, rng, cam, 0, 30, 0.02)
    hubs = [
        AlertMonitor(store, DriftSettings(), lease=store.lease("alerts", f"hub-{k}", ttl=60)) for k in (0, 1)
    ]
    assert hubs[0].step() == 60 and hubs[1].step() == 0
    assert (hubs[0].stats["leader"], hubs[1].stats["leader"]) == (True, False) and hubs[1].cameras == {}
    _stream(store, rng, "B", 30, 10, 0.25)
    stop = threading.Event()
    stop.set()
    hubs[0].run(stop)  # a clean stop gives the lease up: the other hub need not wait for it to expire
    assert hubs[1].step() == 70 and hubs[1].stats["leader"] and hubs[0].step() == 0
    assert {(a["camera"], a["signal"]) for a in store.alerts()} >= {("B", "uncertain_share")}


def test_a_failed_send_is_retried_at_the_next_step(store):
    rng = np.random.default_rng(2)
    _stream(store, rng, "A", 0, 30, 0.02)
    _stream(store, rng, "A", 30, 10, 0.3)
    calls = []

    def flaky(key, value):
        calls.append(key)
        if len(calls) == 1:
            raise OSError("broker away")

    monitor = AlertMonitor(store, DriftSettings(), flaky)
    monitor.step()
    assert monitor.stats["send_errors"] == 1 and monitor.stats["sent"] == 0
    monitor.step()
    assert monitor.stats["sent"] == 1 and len(calls) == 2


def test_camera_error_labels_over_the_share_raise_an_alert_and_closing_it_when_it_falls(store):
    imgs = [make_image("CamX", i) for i in range(20)]
    store.write_batch([], imgs)
    monitor = AlertMonitor(store, DriftSettings(camera_error_share=0.2, camera_error_min_labels=10))
    for i in range(9):
        store.add_label(imgs[i].id, "Camera Error" if i < 5 else "3", "ana")
    monitor.step()
    assert store.alerts() == []  # 5 of 9: too few labels yet
    store.add_label(imgs[9].id, "4", "ana")
    monitor.step()
    [alert] = store.alerts("open")
    assert alert["camera"] == "CamX" and alert["signal"] == "camera_error_labels"
    assert alert["evidence"]["camera_error"] == 5 and alert["evidence"]["labels"] == 10
    for i in range(10, 20):
        store.add_label(imgs[i].id, "7", "ana")
    for i in range(5):
        store.add_label(imgs[i].id, "1", "ana")  # she corrects herself: 0 of 20
    monitor.step()
    assert store.alerts("open") == [] and store.alerts("closed")[0]["close_reason"].startswith("Camera Error")


class _CountingDetector:
    """Stands in for a detector and fails once fed more bits than one window may expand to."""

    drift_detected = False

    def __init__(self, limit: int) -> None:
        self.limit, self.n = limit, 0

    def update(self, _bit: float) -> None:
        self.n += 1
        assert self.n <= self.limit, "one window expanded to more bits than the drift loop allows"


@pytest.mark.parametrize("signal", ["uncertain_share", "accuracy"])
def test_one_huge_window_expands_to_a_bounded_number_of_bits(signal):
    """A valid window counting 10**9 images must not become 10**9 detector updates (memory, a frozen loop)."""
    from metro_app.monitoring.drift import MAX_BITS_PER_WINDOW

    drift = CameraDrift("A", DriftSettings(detector="adwin"))
    counter = _CountingDetector(MAX_BITS_PER_WINDOW)
    drift.signals[signal].detector = counter
    drift.add(metrics_window("A", 0, 10**9, 10**8, correct=9 * 10**8).to_dict())
    assert 0 < counter.n <= MAX_BITS_PER_WINDOW


def test_a_camera_departing_from_the_fleet_is_alerted_from_the_kept_camera_health(store):
    """The fleet check reads the store's camera health rows (issue 23), not every camera's windows."""
    import dataclasses

    from edgemnist.wire.messages import CameraCounts
    from metro_app.samples import make_metrics

    def odd(n: int):
        m = make_metrics("Odd", n)
        return dataclasses.replace(
            m, camera_metrics={"Odd": CameraCounts((1,) + (0,) * 10, (19,) + (0,) * 10)}
        )

    monitor = AlertMonitor(store, DriftSettings(fleet_windows=3))
    for n in range(3):
        store.write_batch([make_metrics(f"Cam{c}", n) for c in range(5)] + [odd(n)], [])
        monitor.step()
    [alert] = [a for a in store.alerts("open") if a["signal"] == "departs_from_fleet"]
    assert alert["camera"] == "Odd" and alert["key"] == "Odd|departs_from_fleet|Odd/r1/m2"
    assert alert["evidence"]["windows"] == 3 and alert["evidence"]["uncertain_share"] == 0.95
    assert alert["evidence"]["fleet_uncertain_share"] == 0.25
    assert alert["started"] == store.camera_windows("Odd", 5)[0]["timestamp"]
