"""A widget-safe update loop: a daemon thread calls `tick()` and only ever sets widget values.

It never writes to an Output widget from the thread (that is what corrupts a
notebook's outputs); a Stop button ends it; `ticks` bounds it for headless runs.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable

import ipywidgets as widgets

__all__ = ["Ticker"]

log = logging.getLogger("metro_app.dashboard")


class Ticker:
    """Call `tick` every `interval` seconds in a background thread until stopped or `ticks` ran."""

    def __init__(
        self, tick: Callable[[], None], interval: float = 2.0, ticks: int = 0, name: str = "live"
    ) -> None:
        self._tick = tick
        self.interval = interval
        self.max_ticks = ticks
        self.count = 0
        self.errors = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.name = name
        self.button = widgets.Button(description="Stop", icon="stop", button_style="warning")
        self.button.add_class("metro-stop")
        self.button.on_click(lambda _b: self.stop())
        self.status = widgets.HTML("not started")
        self.status.add_class("metro-ticker-status")
        self.widget = widgets.HBox([self.button, self.status])

    def start(self) -> Ticker:
        """Start the thread and return at once."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._done.clear()
            self._thread = threading.Thread(target=self._run, name=f"metro-{self.name}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._tick()
                except Exception as exc:  # noqa: BLE001 - a live view survives one bad refresh
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    if self.errors == 1:
                        log.warning("%s refresh failed: %s", self.name, self.last_error)
                self.count += 1
                last = html.escape(self.last_error[:200])  # an error's text may hold <...>: shown as text
                err = f", {self.errors} failed (last: {last})" if self.errors else ""
                self.status.value = f"{self.name}: {self.count} refreshes{err}"
                if self.max_ticks and self.count >= self.max_ticks:
                    break
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            self.button.disabled = True
            self.status.value += " &mdash; stopped"
            self._done.set()

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the loop ends (for headless runs); True when it did."""
        return self._done.wait(timeout)
