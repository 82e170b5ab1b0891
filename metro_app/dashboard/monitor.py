"""Hub health, camera discovery, per-camera live charts, the fleet panel and the CameraHealth table."""

from __future__ import annotations

import html
from collections import deque
from typing import Any

import ipywidgets as widgets

from edgemnist.wire.messages import MetricsMessage
from metro_app.client import ApiError, ViewClient
from metro_app.dashboard import charts
from metro_app.dashboard._data import accuracy_series, active_cameras, camera_totals, window_shares

__all__ = ["HubMonitor", "health_html", "camera_table_html", "alert_banner_html"]

_KEEP = 400


def _fmt(v: Any, spec: str = ".3g", unit: str = "") -> str:
    return "&ndash;" if v is None else f"{v:{spec}}{unit}"


def health_html(health: dict[str, Any] | None, error: str = "") -> str:
    """One line saying whether the hub job is healthy, with what it stored."""
    if health is None:
        return f'<b style="color:#c00">Hub unreachable</b>: {html.escape(error)}'
    s = health["stored"]
    ok = health.get("status") == "ok"
    colour = "#080" if ok else "#c00"
    return (
        f'<span class="metro-health"><b style="color:{colour}">Hub {html.escape(str(health.get("status")))}</b>'
        f" &middot; up {health['uptime']:.0f} s &middot; lag {health.get('consumer_lag')}"
        f" &middot; {s['metrics']} metrics windows, {s['images']} uncertain images, {s['labels']} labels"
        f" &middot; dead letters {health.get('dlq')}</span>"
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


class _CameraPanel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.title = widgets.HTML(f"<b>{html.escape(name)}</b>")
        self.chart = widgets.Image(
            format="png", value=charts.empty_png(), layout={"width": "368px", "height": "208px"}
        )
        self.gauge = widgets.Image(
            format="png", value=charts.empty_png(), layout={"width": "176px", "height": "112px"}
        )
        self.accuracy = widgets.Image(
            format="png", value=charts.empty_png(), layout={"width": "368px", "height": "176px"}
        )
        self.accuracy.add_class("metro-accuracy-chart")
        self.stats = widgets.HTML()
        row = widgets.HBox([self.chart, self.gauge], layout={"align_items": "flex-start"})
        self.widget = widgets.VBox(
            [self.title, row, self.accuracy, self.stats], layout={"width": "600px", "margin": "0 12px 12px 0"}
        )
        self.widget.add_class("metro-camera-panel")
        self.window_images = 0
        self.accuracy_points = 0

    def update(
        self, window: MetricsMessage, health: dict[str, Any] | None, series: list[dict[str, Any]]
    ) -> None:
        shares = window_shares(window, self.name)
        self.accuracy_points = len(series)
        if series:
            self.accuracy.value = charts.accuracy_png(series, self.name)
        self.window_images = shares["total"]
        self.chart.value = charts.digit_share_png(shares, self.name)
        h = health or {}
        self.gauge.value = charts.gauge_png(h.get("images_per_second"), 10.0)
        acc = h.get("accuracy")
        self.title.value = (
            f'<b class="metro-camera-name">{html.escape(self.name)}</b>: '
            f'<span class="metro-window-images">{shares["total"]}</span> images in the last window '
            f"({shares['uncertain_count']} uncertain) at {html.escape(window.timestamp)}"
        )
        self.stats.value = (
            f'live accuracy <b class="metro-live-accuracy">'
            f"{_fmt(acc * 100 if acc is not None else None, '.1f', '%')}</b>"
            f" (n={h.get('accuracy_samples', 0)}, recent windows) &middot; model "
            f"{html.escape(str(h.get('model_version') or ''))} &middot; prep p99 "
            f"{_fmt(h['prep_p99'] * 1000 if h.get('prep_p99') is not None else None, '.2f', ' ms')}"
            f" &middot; predict p99 "
            f"{_fmt(h['predict_p99'] * 1000 if h.get('predict_p99') is not None else None, '.2f', ' ms')}"
            + (
                ' &middot; <b style="color:#c00">&#9888; departs from fleet</b>'
                if h.get("departs_from_fleet")
                else ""
            )
        )


class HubMonitor:
    """Everything read from the hub's metrics views, refreshed by `refresh()` (from any thread)."""

    def __init__(self, client: ViewClient, active_seconds: float = 60.0) -> None:
        self.client = client
        self.active_seconds = active_seconds
        self.metrics: deque[MetricsMessage] = deque(maxlen=_KEEP)
        self._after = -1
        self.health: dict[str, Any] | None = None
        self.cameras: list[dict[str, Any]] = []
        self.active: list[str] = []
        self.panels: dict[str, _CameraPanel] = {}
        self.health_box = widgets.HTML("connecting to the hub&hellip;")
        self.banner = widgets.HTML()
        self.fleet = widgets.HTML()
        self.fleet.add_class("metro-fleet")
        self.table = widgets.HTML()
        self.panel_box = widgets.Box(layout={"flex_flow": "row wrap"})
        self.widget = widgets.VBox(
            [
                self.health_box,
                self.banner,
                widgets.HTML("<h3>Cameras</h3>"),
                self.panel_box,
                widgets.HTML("<h3>Fleet</h3>"),
                self.fleet,
                self.table,
            ]
        )
        self.widget.add_class("metro-monitor")

    def _new_metrics(self) -> None:
        if self._after < 0:
            last = self.client.page("ClassificationMetrics", 0, 1)["last_seq"]
            self._after = max(0, last - _KEEP)
        for _ in range(5):
            page = self.client.page("ClassificationMetrics", self._after, 500)["items"]
            if not page:
                break
            self.metrics.extend(MetricsMessage.of(it["tuple"]) for it in page)
            self._after = page[-1]["seq"]

    def refresh(self) -> None:
        try:
            self.health = self.client.health()
        except ApiError as exc:
            self.health = None
            self.health_box.value = health_html(None, str(exc))
            raise
        self.health_box.value = health_html(self.health)
        self._new_metrics()
        self.cameras = self.client.cameras()
        self.active = active_cameras(self.metrics, self.active_seconds)
        by_name = {c["name"]: c for c in self.cameras}
        latest: dict[str, MetricsMessage] = {}
        for m in self.metrics:
            for cam in m.camera_metrics:
                latest[cam] = m
        for cam in self.active:
            panel = self.panels.get(cam)
            if panel is None:
                panel = self.panels[cam] = _CameraPanel(cam)
            if cam in latest:
                panel.update(latest[cam], by_name.get(cam), accuracy_series(self.metrics, cam))
        children = tuple(self.panels[c].widget for c in self.active)
        if self.panel_box.children != children:
            self.panel_box.children = children
        self.banner.value = alert_banner_html(self.cameras)
        self.table.value = camera_table_html(self.cameras)
        self.fleet.value = self._fleet_html()

    def _fleet_html(self) -> str:
        fleet = self.client.recent("FleetMetrics", 2)
        if not fleet:
            return "no fleet bucket yet"
        b = fleet[-1]["tuple"]
        share = b.get("uncertain_share")
        per = ", ".join(f"{html.escape(c)}: {v['images']}" for c, v in sorted(b["cameras"].items()))
        return (
            f"Fleet bucket from {html.escape(b['bucket_start'])} ({b['bucket_seconds']} s): "
            f"<b>{b['images']}</b> images from {len(b['cameras'])} cameras ({per}), "
            f"uncertain {_fmt(share * 100 if share is not None else None, '.1f', '%')}; "
            f"active cameras: {', '.join(html.escape(c) for c in self.active)}"
        )

    def summary(self) -> str:
        """Plain text for headless runs: cameras seen and what each sent."""
        totals = camera_totals(self.metrics)
        lines = [f"hub status: {self.health.get('status') if self.health else 'unreachable'}"]
        lines += [f"active cameras: {', '.join(self.active)}"]
        for c in self.cameras:
            lines.append(
                f"camera {c['name']}: {c['images']} images scored, {c['uncertain']} uncertain, "
                f"{totals.get(c['name'], 0)} in the windows shown, departs_from_fleet={c['departs_from_fleet']}"
            )
        lines += [f"charts drawn: {sum(1 for p in self.panels.values() if p.window_images)}"]
        return "\n".join(lines)
