"""The hub's alert loop: drift detectors over the store's windows, fleet and label checks, the alerts topic.

The loop reads the store, not the consumer: every metrics row in id order
feeds its camera's `CameraDrift`, so a restarted hub (or a second hub
sharing the store) replays the same windows into the same detectors and
derives the same alerts; the store keeps each alert once (by key) and one
open alert per camera and signal. Each alert is claimed by one hub and sent
once as JSON on the alerts topic (key = camera), so operators can wire it
to their paging. Signals:

- ``uncertain_share`` and ``accuracy``: a detector found a change the bad way (metro_app.monitoring.drift);
- ``departs_from_fleet``: the camera's uncertain share departed from the fleet's median
  (`camerahealth.DEPARTURE`) at `fleet_windows` checks in a row, one check per new window;
- ``camera_error_labels``: more than `camera_error_share` of the camera's settled labels are
  `Camera Error`, once it has `camera_error_min_labels`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson

from edgemnist.wire.messages import MetricsMessage
from metro_app.ingest.runloop import LoopHealth
from metro_app.labels.quality import camera_error_counts
from metro_app.monitoring.drift import CameraDrift, Change, DriftSettings, FleetDrift
from metro_app.store import Store
from metro_app.store.camerarows import recent_span
from metro_app.store.leases import Lease
from metro_app.views.health import DEPARTURE

__all__ = ["AlertMonitor", "alert_json"]

log = logging.getLogger(__name__)
_PAGE = 2000

Publish = Callable[[bytes, bytes], None]  # (key, value): raises when the broker did not take it


def alert_json(alert: dict[str, Any]) -> bytes:
    """The message on the alerts topic: the stored alert, with a type for mixed consumers."""
    return orjson.dumps({"type": "alert", **{k: v for k, v in alert.items() if k != "id"}})


class AlertMonitor:
    """Feeds new store windows to the detectors, raises and closes alerts, sends unsent ones."""

    def __init__(
        self,
        store: Store,
        settings: DriftSettings,
        publish: Publish | None = None,
        *,
        lease: Lease | None = None,
    ) -> None:
        """`lease`: act only while holding it, so of several hubs sharing a store one replays the windows
        into the detectors (K hubs would do K times the work for the same alerts); None: always act."""
        self._store = store
        self._lease = lease
        self.settings = settings
        self._publish = publish
        self.cameras: dict[str, CameraDrift] = {}
        self._fleet = FleetDrift(settings)
        self._after = 0
        self._label_marks: tuple[int, int] | None = None
        self.health = LoopHealth("alerts")  # degraded when one step (say, a huge window) outlasts a minute
        self.stats = {"windows": 0, "changes": 0, "raised": 0, "closed": 0, "sent": 0, "send_errors": 0,
                      "leader": lease is None}  # fmt: skip

    def step(self) -> int:
        """One pass: new windows, fleet, labels, sending. Returns how many windows it read.

        Without the lease (another hub holds it) nothing is read. A hub that takes the lease over
        goes on from the last window it read itself (from the first, if it never led): the store
        keeps each alert once by its key, so windows read twice raise nothing twice.
        """
        if self._lease is not None:
            self.stats["leader"] = self._lease.acquire()
            if not self.stats["leader"]:
                return 0
        read = 0
        fresh: set[str] = set()
        while True:
            rows = self._store.metrics_after(self._after, _PAGE)
            for row_id, body in rows:
                msg = MetricsMessage.of(body)
                for cam in msg.camera_metrics:
                    drift = self.cameras.get(cam)
                    if drift is None:
                        drift = self.cameras[cam] = CameraDrift(cam, self.settings)
                    for change in drift.add(msg):
                        self._on_change(change)
                    fresh.add(cam)
                self._after = row_id
            read += len(rows)
            if len(rows) < _PAGE:
                break
        self.stats["windows"] += read
        if fresh:
            self._check_fleet(fresh)
        self._check_labels()
        self.send_pending()
        return read

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Step every `interval` seconds until `stop`; a failing step is logged and retried."""
        while not stop.is_set():
            self.health.begin()
            try:
                self.step()
                self.health.done()
            except Exception:  # health stays begun: a step failing for longer than its period is reported
                log.exception("alert loop: a step failed; retrying")
            stop.wait(interval)
        if self._lease is not None and self.stats["leader"]:
            try:  # a clean stop: another hub takes over now, not when the lease expires
                self._lease.release()
            except Exception as exc:
                log.warning("alert loop: releasing the lease: %s", exc)

    def _on_change(self, change: Change) -> None:
        self.stats["changes"] += 1
        if change.worse:
            new = self._store.add_alert(
                change.key, change.camera, change.signal, change.started, change.message(), change.evidence()
            )
            if new is not None:
                self.stats["raised"] += 1
                log.warning("alert: %s", change.message())
        elif abs(change.after_mean - change.before_mean) >= self.settings.min_change:
            why = f"recovered: {change.message()}"
            self.stats["closed"] += self._store.close_alerts(change.camera, change.signal, why)

    def _check_fleet(self, fresh: set[str]) -> None:
        """Departs from the fleet: the fresh cameras' recent uncertain share against the fleet's median.

        Both come from the store's camera health rows, kept as windows arrive, so a check costs the
        same at 10 or 10,000 cameras.
        """
        fleet = self._store.uncertain_median()
        if fleet is None:
            return
        rows = self._store.camera_rows_named(fresh)
        shares = {cam: r["uncertain_share"] for cam, r in rows.items()}
        flags = {cam: s is not None and abs(s - fleet) > DEPARTURE for cam, s in shares.items()}
        raised, back = self._fleet.update(flags)
        for cam in raised:
            windows, started, last_id = recent_span(rows[cam])
            share = shares[cam]
            assert share is not None
            evidence = {
                "uncertain_share": share,
                "fleet_uncertain_share": fleet,
                "departure": DEPARTURE,
                "windows": windows,
                "checks_in_a_row": self.settings.fleet_windows,
            }
            message = (
                f"camera {cam}: uncertain share {share:.1%} departs from the fleet's {fleet:.1%} "
                f"by more than {DEPARTURE:.0%} ({self.settings.fleet_windows} checks in a row)"
            )
            key = f"{cam}|departs_from_fleet|{last_id or ''}"
            if self._store.add_alert(key, cam, "departs_from_fleet", started, message, evidence) is not None:
                self.stats["raised"] += 1
                log.warning("alert: %s", message)
        for cam in back:
            self.stats["closed"] += self._store.close_alerts(cam, "departs_from_fleet", "back with the fleet")

    def _check_labels(self) -> None:
        marks = self._store.label_marks()
        if marks == self._label_marks:
            return
        self._label_marks = marks
        settled = self._store.settled_labels()
        counts = camera_error_counts(settled, self._store.image_cameras(list(settled)))
        s = self.settings
        for cam, (errors, total, last_id) in counts.items():
            share = errors / total
            if total >= s.camera_error_min_labels and share > s.camera_error_share:
                message = (
                    f"camera {cam}: {errors} of its {total} labelled images ({share:.0%}) are labelled "
                    f"Camera Error, more than {s.camera_error_share:.0%}"
                )
                evidence = {"camera_error": errors, "labels": total, "share": share,
                            "threshold": s.camera_error_share, "min_labels": s.camera_error_min_labels}  # fmt: skip
                key = f"{cam}|camera_error_labels|{last_id}"
                if self._store.add_alert(key, cam, "camera_error_labels", "", message, evidence) is not None:
                    self.stats["raised"] += 1
                    log.warning("alert: %s", message)
            else:
                self.stats["closed"] += self._store.close_alerts(
                    cam, "camera_error_labels", f"Camera Error labels down to {share:.0%} of {total}"
                )

    def send_pending(self) -> None:
        """Send every alert no hub has sent yet; one that fails is retried at the next step."""
        if self._publish is None:
            return
        for alert in self._store.claim_unsent_alerts():
            try:
                self._publish(alert["camera"].encode(), alert_json(alert))
                self.stats["sent"] += 1
            except Exception as exc:
                self.stats["send_errors"] += 1
                log.warning("alert %s not sent (%s); retrying later", alert["key"], exc)
                self._store.unclaim_alert(alert["id"])
