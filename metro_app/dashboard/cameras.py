"""The Cameras section for a fleet: one page of cameras, worst first, with a name filter; a click opens one.

The hub sorts, filters and pages (`GET /cameras?sort=&q=&limit=&offset=`, `ViewClient.camera_page`),
so a page costs the same for 10 cameras or 10,000. Rows are a fixed pool of widgets whose values
change only when the page does; the detail draws its charts only when a new window arrived.
"""

from __future__ import annotations

import base64
import html
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ipywidgets as widgets

from edgemnist.wire.messages import MetricsMessage
from metro_app.client import ViewClient
from metro_app.dashboard import charts
from metro_app.dashboard._data import accuracy_series, recent_accuracy, window_shares

__all__ = ["SORTS", "CameraList", "CameraDetail", "row_html", "accuracy_html"]

# what the sort menu says -> the hub's sort key (worst first; names A to Z)
SORTS = {
    "lowest live accuracy": "accuracy",
    "highest uncertain share": "uncertain",
    "highest p99 latency": "p99",
    "name (A to Z)": "name",
}
_COLUMNS = (
    ("camera", 170),
    ("live accuracy, 5 windows", 160),
    ("uncertain %", 90),
    ("fleet %", 70),
    ("images/s", 80),
    ("p99 ms", 70),
    ("model", 230),
    ("alert", 200),
)
_SIGNALS = {
    "uncertain_share": "uncertain share",
    "accuracy": "live accuracy",
    "departs_from_fleet": "departs from fleet",
    "camera_error_labels": "Camera Error labels",
}


def _fmt(v: Any, spec: str, scale: float = 1.0, unit: str = "") -> str:
    return "&ndash;" if v is None else f"{v * scale:{spec}}{unit}"


def _hms(ts: str | None) -> str:
    """The time of day of an ISO timestamp (UTC), e.g. 13:02:07."""
    return str(ts or "")[11:19]


def _cell(text: str, width: int) -> str:
    return (
        f'<span style="display:inline-block;width:{width}px;overflow:hidden;white-space:nowrap;'
        f'text-overflow:ellipsis;vertical-align:middle">{text}</span>'
    )


def header_html() -> str:
    return (
        '<div class="metro-camera-head" style="font-size:12px;font-weight:bold">'
        + "".join(_cell(h, w) for h, w in _COLUMNS)
        + "</div>"
    )


def alert_text(c: dict[str, Any]) -> str:
    """The camera's open alerts (and a departure from the fleet) in words; empty when all is well."""
    what = [_SIGNALS.get(a["signal"], a["signal"]) for a in c.get("alerts") or []]
    if c.get("departs_from_fleet") and "departs from fleet" not in what:
        what.insert(0, "departs from fleet")
    return ", ".join(what)


def row_html(c: dict[str, Any]) -> str:
    """One camera's figures, in the columns after its name (the name is the row's button).

    >>> h = row_html({"name": "C", "accuracy": 0.5, "accuracy_samples": 40, "uncertain_share": 0.1,
    ...               "alerts": [{"signal": "accuracy"}]})
    >>> "50.0% (n=40)" in h and "10.0" in h and "live accuracy" in h
    True
    """
    alert = alert_text(c)
    p99 = max((v for v in (c.get("prep_p99"), c.get("predict_p99")) if v is not None), default=None)
    cells = [
        _fmt(c.get("accuracy"), ".1f", 100, "%") + f" (n={c.get('accuracy_samples', 0)})",
        _fmt(c.get("uncertain_share"), ".1f", 100),
        _fmt(c.get("fleet_uncertain_share"), ".1f", 100),
        _fmt(c.get("images_per_second"), ".1f"),
        _fmt(p99, ".2f", 1000),
        f'<code style="font-size:10px">{html.escape(str(c.get("model_version") or ""))}</code>',
        f'<b class="metro-alert" style="color:#c00">&#9888; {html.escape(alert)}</b>' if alert else "ok",
    ]
    widths = [w for _, w in _COLUMNS[1:]]
    style = "background:#fee;" if alert else ""
    return (
        f'<div style="font-size:12px;{style}">'
        + "".join(_cell(x, w) for x, w in zip(cells, widths, strict=True))
        + "</div>"
    )


class _Row:
    """One row of the page: the camera's name as a button (opens it), then its figures."""

    def __init__(self, on_open: Callable[[str], None]) -> None:
        self.name = ""
        self.button = widgets.Button(layout={"width": f"{_COLUMNS[0][1] - 4}px", "height": "24px"})
        self.button.add_class("metro-camera-open")
        self.button.on_click(lambda _b: on_open(self.name) if self.name else None)
        self.cells = widgets.HTML()
        self.widget = widgets.HBox([self.button, self.cells], layout={"display": "none"})
        self.widget.add_class("metro-camera-row")

    def show(self, c: dict[str, Any] | None) -> None:
        if c is None:
            self.name = ""
            self.widget.layout.display = "none"
            return
        self.name = c["name"]
        self.button.description = c["name"]
        self.button.tooltip = f"open {c['name']}"
        self.cells.value = row_html(c)
        self.widget.layout.display = "flex"


class CameraList:
    """A page of cameras sorted worst first, a name filter, previous/next; `on_open(name)` on a click."""

    def __init__(self, client: ViewClient, on_open: Callable[[str], None], page_size: int = 15) -> None:
        self.client = client
        self.page_size = page_size
        self.offset = 0
        self.total = 0
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.sort = widgets.Dropdown(options=list(SORTS), value="lowest live accuracy", description="sort")
        self.filter = widgets.Text(placeholder="part of a camera name", description="filter")
        self.filter.add_class("metro-camera-filter")
        self.filter.continuous_update = False
        self.prev = widgets.Button(description="previous", icon="arrow-left", layout={"width": "110px"})
        self.next = widgets.Button(description="next", icon="arrow-right", layout={"width": "110px"})
        self.position = widgets.HTML()
        self.position.add_class("metro-camera-position")
        self.prev.on_click(lambda _b: self.turn(-1))
        self.next.on_click(lambda _b: self.turn(+1))
        self.sort.observe(lambda _c: self._restart(), names="value")
        self.filter.observe(lambda _c: self._restart(), names="value")
        self.rows = [_Row(on_open) for _ in range(page_size)]
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.sort, self.filter, self.prev, self.next, self.position]),
                widgets.HTML(header_html()),
                *(r.widget for r in self.rows),
            ]
        )
        self.widget.add_class("metro-camera-table")

    @property
    def query(self) -> str:
        return self.filter.value.strip()

    def _restart(self) -> None:
        self.offset = 0
        self.refresh()

    def turn(self, pages: int) -> None:
        self.offset = max(0, min(self.offset + pages * self.page_size, max(0, self.total - 1)))
        self.offset -= self.offset % self.page_size
        self.refresh()

    def refresh(self) -> None:
        """Read the page shown (sort, filter, offset) from the hub and show it."""
        with self._lock:
            page = self.client.camera_page(
                limit=self.page_size, offset=self.offset, sort=SORTS[self.sort.value], q=self.query or None
            )
            self.total, self.items = int(page["total"]), list(page["items"])
            if not self.items and self.offset:  # the fleet shrank under the page: back to the first
                self.offset = 0
                page = self.client.camera_page(
                    limit=self.page_size, offset=0, sort=SORTS[self.sort.value], q=self.query or None
                )
                self.total, self.items = int(page["total"]), list(page["items"])
            for k, row in enumerate(self.rows):
                row.show(self.items[k] if k < len(self.items) else None)
            first = self.offset + 1 if self.items else 0
            matching = f" matching &ldquo;{html.escape(self.query)}&rdquo;" if self.query else ""
            self.position.value = (
                f"cameras <b>{first}&ndash;{self.offset + len(self.items)}</b> of "
                f'<b class="metro-camera-total">{self.total}</b>{matching}'
            )
            self.prev.disabled = self.offset == 0
            self.next.disabled = self.offset + len(self.items) >= self.total


def accuracy_html(recent: dict[str, Any] | None, health: dict[str, Any] | None) -> str:
    """The camera's one live accuracy, with the windows and the time span it covers.

    >>> accuracy_html({"accuracy": 0.768, "labelled": 1262, "windows": 5,
    ...                "start": "2026-01-01T13:22:50Z", "end": "2026-01-01T13:23:15Z"}, None)
    'live accuracy <b class="metro-live-accuracy">76.8%</b> over the last 5 windows (13:22:50&ndash;13:23:15 UTC, n=1262)'
    """
    if recent is not None:
        return (
            f'live accuracy <b class="metro-live-accuracy">{100 * recent["accuracy"]:.1f}%</b> over the last '
            f"{recent['windows']} windows ({_hms(recent['start'])}&ndash;{_hms(recent['end'])} UTC, "
            f"n={recent['labelled']})"
        )
    h = health or {}
    if h.get("accuracy") is None:
        return "live accuracy &ndash; (its source knows no labels)"
    return (
        f'live accuracy <b class="metro-live-accuracy">{100 * h["accuracy"]:.1f}%</b> over its last windows '
        f"at the hub (n={h.get('accuracy_samples', 0)}; this page holds none of them)"
    )


class CameraDetail:
    """One camera: its last window's digit shares, images/s, live accuracy per window, recent uncertain
    images and its model. Charts are drawn again only when the camera sent a new window."""

    def __init__(self, thumbnails: int = 6) -> None:
        self.name: str | None = None
        self.title = widgets.HTML("<i>click a camera above to open it</i>")
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
        self.thumbs = [
            widgets.Image(
                format="png",
                value=charts.empty_png(),
                layout={"width": "56px", "height": "56px", "margin": "2px"},
            )
            for _ in range(thumbnails)
        ]
        self.thumbs_caption = widgets.HTML()
        self.thumbs_caption.add_class("metro-camera-images")
        row = widgets.HBox([self.chart, self.gauge], layout={"align_items": "flex-start"})
        self.widget = widgets.VBox(
            [self.title, row, self.accuracy, self.stats, self.thumbs_caption, widgets.HBox(self.thumbs)],
            layout={"width": "620px", "margin": "0 12px 12px 0"},
        )
        self.widget.add_class("metro-camera-panel")
        self.window_images = 0
        self.accuracy_points = 0
        self._drawn: tuple[Any, ...] = ()
        self._share_chart = charts.ShareChart()
        self._accuracy_chart = charts.AccuracyChart()
        self._gauge: Any = object()
        self._thumbs: tuple[str, ...] = ()
        self._pngs: dict[str, bytes] = {}

    def update(
        self,
        name: str,
        metrics: Iterable[MetricsMessage],
        health: dict[str, Any] | None,
        images: Sequence[dict[str, Any]],
    ) -> None:
        """Show camera `name` from the windows this page holds, its health row and recent images."""
        self.name = name
        latest: MetricsMessage | None = None
        windows = []
        for m in metrics:
            if name in m.camera_metrics:
                latest = m
                windows.append(m)
        series = accuracy_series(windows, name)
        recent = recent_accuracy(series)
        key = (name, latest.timestamp if latest else None, len(series))
        if key != self._drawn:  # a new window (or another camera): draw again, else nothing changes
            self._drawn = key
            self.accuracy_points = len(series)
            self.accuracy.value = (
                self._accuracy_chart.png(series, name, recent) if series else charts.empty_png()
            )
            self.accuracy.layout.display = None if series else "none"
            self.chart.layout.display = None if latest is not None else "none"
            if latest is not None:
                shares = window_shares(latest, name)
                self.window_images = shares["total"]
                self.chart.value = self._share_chart.png(shares, name)
            else:
                self.window_images = 0
                self.chart.value = charts.empty_png()
        h = health or {}
        rate = None if h.get("images_per_second") is None else round(float(h["images_per_second"]), 1)
        if rate != self._gauge:
            self._gauge = rate
            self.gauge.value = charts.gauge_png(rate, 10.0)
        when = (
            f'<span class="metro-window-images">{self.window_images}</span> images in its last window '
            f"at {html.escape(_hms(latest.timestamp))} UTC"
            if latest is not None
            else "no window of it among the ones this page holds yet"
        )
        self.title.value = f'<b class="metro-camera-name">{html.escape(name)}</b>: {when}'
        alert = alert_text(h)
        self.stats.value = (
            f"{accuracy_html(recent, h)} &middot; model <code>{html.escape(str(h.get('model_version') or ''))}</code>"
            f" &middot; prep p99 {_fmt(h.get('prep_p99'), '.2f', 1000, ' ms')}"
            f" &middot; predict p99 {_fmt(h.get('predict_p99'), '.2f', 1000, ' ms')}"
            + (f' &middot; <b style="color:#c00">&#9888; {html.escape(alert)}</b>' if alert else "")
        )
        self._show_images([t for t in images if t.get("camera") == name][-len(self.thumbs) :])

    def _show_images(self, mine: list[dict[str, Any]]) -> None:
        ids = tuple(str(t.get("id")) for t in mine)
        if ids == self._thumbs:
            return
        self._thumbs = ids
        pngs = {i: self._pngs[i] for i in ids if i in self._pngs}  # an image already shown is not drawn again
        for t, i in zip(mine, ids, strict=True):
            if i not in pngs:
                pngs[i] = charts.frame_png(base64.b64decode(t["image"]), 56)
        self._pngs = pngs
        for k, img in enumerate(self.thumbs):
            img.value = pngs[ids[k]] if k < len(ids) else charts.empty_png()
        self.thumbs_caption.value = (
            f"its {len(mine)} newest uncertain images (scores "
            + ", ".join(f"{t['result_probability']:.2f}" for t in mine)
            + ")"
            if mine
            else "no uncertain image of it among the newest the hub stored"
        )
