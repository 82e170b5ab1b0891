"""Hub health (red while the hub does not answer), the fleet's summary, the Cameras section and a camera's detail."""

from __future__ import annotations

import html
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import ipywidgets as widgets

from edgemnist.wire.messages import MetricsMessage
from metro_app.client import ApiError, ViewClient
from metro_app.dashboard._data import camera_totals
from metro_app.dashboard.cameras import CameraDetail, CameraList

__all__ = [
    "HubMonitor",
    "health_html",
    "unreachable_html",
    "fleet_html",
    "camera_table_html",
    "alert_banner_html",
]

_KEEP = 400
_CAMERA_WINDOWS = 60  # the opened camera's newest windows its accuracy chart shows


def _fmt(v: Any, spec: str = ".3g", unit: str = "") -> str:
    return "&ndash;" if v is None else f"{v:{spec}}{unit}"


def _clock(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%H:%M:%S")


def unreachable_html(since: float, failed: int, error: str) -> str:
    """The header while the hub does not answer: red, since when, and why.

    >>> "hub unreachable since 00:00:05 UTC" in unreachable_html(5.0, 2, "refused")
    True
    """
    return (
        '<div class="metro-health metro-hub-down" style="background:#c00;color:#fff;padding:6px 10px;'
        f'font-weight:bold">&#9888; hub unreachable since {_clock(since)} UTC ({failed} '
        f"refresh{'es' if failed != 1 else ''} failed; "
        "the figures below are from before) &middot; "
        f'<span style="font-weight:normal">{html.escape(error[:300])}</span></div>'
    )


def health_html(health: dict[str, Any] | None, error: str = "") -> str:
    """One line saying whether the hub job is healthy, with what it stored."""
    if health is None:
        return unreachable_html(time.time(), 1, error)
    s = health["stored"]
    ok = health.get("status") == "ok"
    colour = "#080" if ok else "#c00"
    # an API hub (--no-ingest) has no consumer and so no lag: it shows what the ingesting hubs stored
    ingest = (health.get("consumer") or {}).get("ingest") is not False
    lag = f"lag {health.get('consumer_lag')}" if ingest else "API hub, no ingest"
    return (
        f'<span class="metro-health"><b style="color:{colour}">Hub {html.escape(str(health.get("status")))}</b>'
        f" &middot; up {health['uptime']:.0f} s &middot; {lag}"
        f" &middot; {s['metrics']} metrics windows, {s['images']} uncertain images, {s['labels']} labels"
        f" &middot; dead letters {health.get('dlq')} &middot; checked {_clock(time.time())} UTC</span>"
    )


def fleet_html(summary: dict[str, Any]) -> str:
    """The fleet in one line: cameras, active, alerting, the median uncertain share.

    >>> fleet_html({"cameras": 1000, "active": 990, "alerting": 3, "fleet_uncertain_share": 0.016})
    '<span class="metro-fleet-summary"><b>1000</b> cameras, 990 sent a window lately, <b style="color:#c00">3 alerting</b>, fleet uncertain share (median) 1.6%</span>'
    """
    alerting = int(summary.get("alerting") or 0)
    alert = f'<b style="color:#c00">{alerting} alerting</b>' if alerting else "none alerting"
    share = summary.get("fleet_uncertain_share")
    return (
        f'<span class="metro-fleet-summary"><b>{summary.get("cameras", 0)}</b> cameras, '
        f"{summary.get('active', 0)} sent a window lately, {alert}, fleet uncertain share (median) "
        f"{_fmt(share * 100 if share is not None else None, '.1f', '%')}</span>"
    )


_SIGNALS = {
    "uncertain_share": "uncertain share",
    "accuracy": "live accuracy",
    "departs_from_fleet": "departs from fleet",
    "camera_error_labels": "Camera Error labels",
}


def alert_banner_html(cameras: list[dict[str, Any]]) -> str:
    """A red banner listing every open camera alert (empty when there is none)."""
    alerts = [a for c in cameras for a in c.get("alerts") or []]
    if not alerts:
        return ""
    items = "".join(
        f"<li><b>{html.escape(a['camera'])}</b> &middot; {html.escape(_SIGNALS.get(a['signal'], a['signal']))}"
        f" since {html.escape(a.get('started') or a.get('raised') or '')}: {html.escape(a['message'])}</li>"
        for a in alerts
    )
    return (
        '<div class="metro-alert-banner" style="background:#fdd;border:2px solid #c00;padding:6px 10px;'
        f'margin:4px 0"><b style="color:#c00">&#9888; {len(alerts)} open camera alert'
        f'{"s" if len(alerts) != 1 else ""}</b><ul style="margin:4px 0">{items}</ul></div>'
    )


def camera_table_html(cameras: list[dict[str, Any]]) -> str:
    """The CameraHealth view as a table; a camera that departs from the fleet is flagged in red."""
    head = (
        "camera",
        "images",
        "images/s",
        "uncertain %",
        "fleet %",
        "live accuracy",
        "prep p99 ms",
        "predict p99 ms",
        "outbox",
        "held back",
        "model",
        "alert",
    )
    rows = []
    for c in cameras:
        open_alerts = c.get("alerts") or []
        alert = c.get("departs_from_fleet") or bool(open_alerts)
        what = ", ".join(_SIGNALS.get(a["signal"], a["signal"]) for a in open_alerts)
        if c.get("departs_from_fleet") and "departs from fleet" not in what:
            what = ", ".join(x for x in ("departs from fleet", what) if x)
        share, fleet = c.get("uncertain_share"), c.get("fleet_uncertain_share")
        cells = [
            html.escape(c["name"]),
            str(c["images"]),
            _fmt(c.get("images_per_second"), ".1f"),
            _fmt(share * 100 if share is not None else None, ".1f"),
            _fmt(fleet * 100 if fleet is not None else None, ".1f"),
            _fmt(c["accuracy"] * 100 if c.get("accuracy") is not None else None, ".1f", "%")
            + f" (n={c.get('accuracy_samples', 0)})",
            _fmt(c["prep_p99"] * 1000 if c.get("prep_p99") is not None else None, ".2f"),
            _fmt(c["predict_p99"] * 1000 if c.get("predict_p99") is not None else None, ".2f"),
            _fmt(c.get("outbox_pending"), "d"),
            _fmt(c.get("held_back"), "d"),
            f'<code style="font-size:10px">{html.escape(str(c.get("model_version") or ""))}</code>',
            f'<b class="metro-alert" style="color:#c00">&#9888; {html.escape(what)}</b>' if alert else "ok",
        ]
        style = ' style="background:#fee"' if alert else ""
        rows.append(f"<tr{style}>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    th = "".join(f"<th>{h}</th>" for h in head)
    return (
        '<table class="metro-camera-table" style="border-collapse:collapse;font-size:12px" border="1" '
        f'cellpadding="3"><tr>{th}</tr>{"".join(rows)}</table>'
    )


class HubMonitor:
    """The hub's health, the fleet, a page of cameras and one camera's detail; `refresh()` from any thread."""

    def __init__(self, client: ViewClient, page_size: int = 15, health_timeout: float = 3.0) -> None:
        self.client = client
        self.health_timeout = health_timeout
        self.metrics: deque[MetricsMessage] = deque(maxlen=_KEEP)
        self._after = -1
        self.health: dict[str, Any] | None = None
        self.summary_body: dict[str, Any] = {}
        self.unreachable_since: float | None = None
        self.failed = 0
        self.selected: str | None = None
        self._windows: dict[tuple[Any, Any], MetricsMessage] = {}
        self.health_box = widgets.HTML("connecting to the hub&hellip;")
        self.health_box.add_class("metro-header")
        self.banner = widgets.HTML()
        self.fleet = widgets.HTML()
        self.fleet.add_class("metro-fleet")
        self.list = CameraList(client, self.open, page_size=page_size)
        self.detail = CameraDetail()
        self.widget = widgets.VBox(
            [
                self.health_box,
                self.banner,
                widgets.HTML("<h3>Cameras</h3>"),
                self.fleet,
                self.list.widget,
                self.detail.widget,
            ]
        )
        self.widget.add_class("metro-monitor")

    @property
    def cameras(self) -> list[dict[str, Any]]:
        """The cameras on the page shown."""
        return self.list.items

    def _new_metrics(self) -> None:
        if self._after < 0:
            last = self.client.page("ClassificationMetrics", 0, 1)["last_seq"]
            self._after = max(0, last - _KEEP)
        page = self.client.page("ClassificationMetrics", self._after, 500)["items"]
        if page:
            self.metrics.extend(MetricsMessage.of(it["tuple"]) for it in page)
            self._after = page[-1]["seq"]

    def check(self) -> dict[str, Any]:
        """Ask the hub's /health (short timeout); while it does not answer the header is red."""
        try:
            self.health = self.client.health(timeout=self.health_timeout)
        except ApiError as exc:
            self.health = None
            self.failed += 1
            if self.unreachable_since is None:
                self.unreachable_since = time.time()
            self.health_box.value = unreachable_html(self.unreachable_since, self.failed, str(exc))
            raise
        self.unreachable_since, self.failed = None, 0
        self.health_box.value = health_html(self.health)
        return self.health

    def refresh(self, check: bool = True) -> None:
        """Read the hub again (`check`: its /health first; the dashboard checks it itself)."""
        if check:
            self.check()
        self._new_metrics()
        self.summary_body = self.client.fleet_summary(worst=5)
        self.fleet.value = fleet_html(self.summary_body)
        self.list.refresh()
        if self.selected is None and self.list.items:
            self.selected = self.list.items[0]["name"]  # the worst camera, until a person opens another
        self.banner.value = alert_banner_html(self.list.items)
        self._show_selected()

    def open(self, name: str) -> None:
        """A click on a camera: show its detail now."""
        self.selected = name
        self._show_selected()

    def _show_selected(self) -> None:
        """The opened camera from its own windows and images (asked of the hub by name, so it has a
        chart in a fleet of 10,000 whose newest windows on this page are all other cameras')."""
        if self.selected is None:
            return
        try:
            got: dict[str, Any] | None = self.client.camera(
                self.selected, recent_windows=_CAMERA_WINDOWS, recent_images=len(self.detail.thumbs)
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
            got = None
        if got is None:
            self.detail.update(self.selected, [], None, [])
            return
        self.detail.update(
            self.selected, self._parsed(got.pop("recent_windows", [])), got, got.pop("recent_images", [])
        )

    def _parsed(self, windows: list[dict[str, Any]]) -> list[MetricsMessage]:
        """The windows as messages; a window parsed at an earlier refresh is not parsed again."""
        keys = [(w.get("id"), w.get("timestamp")) for w in windows]
        cache = self._windows
        self._windows = {k: cache.get(k) or MetricsMessage.of(w) for k, w in zip(keys, windows, strict=True)}
        return [self._windows[k] for k in keys]

    def summary(self) -> str:
        """Plain text for headless runs: the fleet, the page of cameras and the camera opened."""
        totals = camera_totals(self.metrics)
        lines = [f"hub status: {self.health.get('status') if self.health else 'unreachable'}"]
        lines += [
            f"fleet: {self.summary_body.get('cameras', 0)} cameras, {self.summary_body.get('alerting', 0)} alerting"
        ]
        for c in self.list.items:
            lines.append(
                f"camera {c['name']}: {c['images']} images scored, {c['uncertain']} uncertain, "
                f"{totals.get(c['name'], 0)} in the windows shown, departs_from_fleet={c['departs_from_fleet']}"
            )
        lines += [f"camera opened: {self.selected} ({self.detail.window_images} images in its last window)"]
        return "\n".join(lines)
