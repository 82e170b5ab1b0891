"""The render-metro-views dashboard: monitor, gallery and Correction Station on one page."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from metro_app.client import ApiError, ViewClient
from metro_app.dashboard._data import unseen_labels
from metro_app.dashboard.gallery import Gallery
from metro_app.dashboard.live import Ticker
from metro_app.dashboard.models import ModelsPanel
from metro_app.dashboard.monitor import HubMonitor
from metro_app.dashboard.station import CorrectionStation

__all__ = ["MetroDashboard", "render_metro_views", "signed_in_html"]


def signed_in_html(who: dict[str, Any] | None) -> str:
    """Who the dashboard's token signs in as (GET /whoami), as one line of HTML.

    >>> signed_in_html({"person": {"name": "ana", "role": "labeller", "verified": True}})
    '<span class="metro-whoami">signed in as <b>ana</b> (labeller)</span>'
    >>> "unverified" in signed_in_html({"person": {"name": "default", "role": "operator", "verified": False}})
    True
    """
    person = (who or {}).get("person")
    if who is None:
        text = "not signed in: this hub needs a token to read (EDGE_MNIST_API_TOKEN)"
    elif person is None:
        text = "not signed in: reads only"
    elif person["verified"]:
        text = f"signed in as <b>{html.escape(person['name'])}</b> ({html.escape(person['role'])})"
    else:
        text = "shared token: operator <b>default</b>; labels carry the labeller typed below (unverified)"
    return f'<span class="metro-whoami">{text}</span>'


class MetroDashboard:
    """Live views of a hub; `start()` returns at once and a background thread keeps them fresh."""

    def __init__(
        self,
        api_url: str,
        token: str | None = None,
        *,
        interval: float = 2.0,
        ticks: int = 0,
        station_size: int = 24,
        labeller: str = "dashboard",
        ca_file: str | None = None,
    ) -> None:
        self.client = ViewClient(api_url, token=token, timeout=15, ca_file=ca_file)
        self.title = widgets.HTML(f"<h2>edge-mnist hub at {html.escape(api_url)}</h2>")
        self.whoami = widgets.HTML()
        self._signed_in = False
        self.monitor = HubMonitor(self.client)
        self.gallery = Gallery(self.client)
        self.station = CorrectionStation(self.client, size=station_size, labeller=labeller)
        self.models = ModelsPanel(self.client)
        self.ticker = Ticker(self._tick, interval=interval, ticks=ticks, name="live views")
        self.models_every = max(1, round(10.0 / interval))  # the registry and its cameras: every ~10 s
        self._seen: dict[str, Any] = {}
        self._unseen_due = True
        self.widget = widgets.VBox(
            [
                self.title,
                self.whoami,
                self.ticker.widget,
                self.monitor.widget,
                widgets.HTML("<h3>Models</h3>"),
                self.models.widget,
                widgets.HTML("<h3>Uncertain images</h3>"),
                self.gallery.widget,
                widgets.HTML("<h3>Correction Station</h3>"),
                self.station.widget,
            ]
        )
        self.widget.add_class("metro-dashboard")

    def sign_in(self) -> dict[str, Any] | None:
        """Ask the hub who the token names; show it, and label as that person when verified."""
        try:
            who: dict[str, Any] | None = self.client.whoami()
        except ApiError as exc:
            if exc.status != 401:
                raise
            who = None
        self.whoami.value = signed_in_html(who)
        self.station.sign_in((who or {}).get("person"))
        self._signed_in = True
        return who

    def _tick(self) -> None:
        """One refresh; the costly reads happen only when the hub's counts say something changed."""
        if not self._signed_in:
            self.sign_in()
        self.monitor.check()
        stored = dict((self.monitor.health or {}).get("stored") or {})
        if stored.get("images") != self._seen.get("images"):
            self.gallery.refresh()
        self.monitor.refresh(check=False)
        if stored.get("labels") != self._seen.get("labels"):  # an upload, here or anywhere: read labels again
            self.station.refresh_labellers()
            self._unseen_due = True
        if self.ticker.count % self.models_every == 0:
            models, rollouts = self.client.models(), self.client.rollouts(10)
            changed = models != self.models.models or rollouts != self.models.rollouts
            if changed or self.ticker.count % (self.models_every * 5) == 0:
                self.models.refresh(self.client.cameras(), models, rollouts)
                self.station.show_shadow(self.models.rollouts)
                self._unseen_due = True
        if self._unseen_due:
            self.station.show_unseen(*unseen_labels(self.client.labels(), self.models.models))
            self._unseen_due = False
        self._seen = stored
        if not self.station.state.items and len(self.gallery.items) >= self.station.size.value:
            self.station.load_if_empty()

    def start(self) -> MetroDashboard:
        self.ticker.start()
        return self

    def stop(self) -> None:
        self.ticker.stop()

    def wait(self, timeout: float | None = None) -> bool:
        return self.ticker.wait(timeout)

    def summary(self) -> str:
        """Plain text of what the dashboard shows, for headless runs and logs."""
        return "\n".join(
            [
                self.monitor.summary(),
                f"gallery: {len(self.gallery.items)} uncertain images",
                f"correction station: {self.station.state.counter()}",
                f"models in the registry: {len(self.models.models)}",
                f"refreshes: {self.ticker.count}, failed: {self.ticker.errors}",
            ]
        )

    def show_snapshot(self) -> None:
        """Display the current charts and gallery image as plain PNG outputs (kept in a saved notebook)."""
        from IPython.display import Image, display

        detail = self.monitor.detail
        if detail.window_images:
            print(f"chart: {detail.name}")
            display(Image(data=detail.chart.value, format="png"))
        if self.gallery.card.shown:
            print(f"gallery image: {self.gallery.card.shown}")
            for img in (self.gallery.card.frame, self.gallery.card.prepared, self.gallery.card.scores):
                display(Image(data=img.value, format="png"))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def render_metro_views(api_url: str, token: str | None = None, **kw: object) -> MetroDashboard:
    """Build, show and start the dashboard; the cell returns while it keeps updating."""
    from IPython.display import display

    dash = MetroDashboard(api_url, token, **kw)  # type: ignore[arg-type]
    display(dash.widget)
    return dash.start()
