"""A live gallery of uncertain images: frame, prepared 28x28 image, the ten scores; previous/next."""

from __future__ import annotations

import base64
import html
from collections import deque
from typing import Any

import ipywidgets as widgets

from metro_app.client import ViewClient
from metro_app.dashboard import charts
from metro_app.dashboard._data import split_confident

__all__ = ["ImageCard", "Gallery"]


def _box(w: int, h: int) -> dict[str, str]:
    return {"width": f"{w}px", "height": f"{h}px", "margin": "2px"}


class ImageCard:
    """One uncertain image shown as frame, prepared image and scores, with a caption."""

    def __init__(self) -> None:
        self.frame = widgets.Image(format="png", value=charts.empty_png(), layout=_box(112, 112))
        self.prepared = widgets.Image(format="png", value=charts.empty_png(), layout=_box(112, 112))
        self.scores = widgets.Image(format="png", value=charts.empty_png(), layout=_box(256, 144))
        self.caption = widgets.HTML()
        row = widgets.HBox([self.frame, self.prepared, self.scores], layout={"align_items": "flex-start"})
        self.widget = widgets.VBox([row, self.caption])
        self.widget.add_class("metro-image-card")
        self.shown: str | None = None

    def show(self, t: dict[str, Any], extra: str = "") -> None:
        if self.shown != t.get("id"):
            self.frame.value = charts.frame_png(base64.b64decode(t["image"]))
            self.prepared.value = charts.prepared_png(t["prepared_image"])
            self.scores.value = charts.scores_png(t["predictions"], t["result_class"])
            self.shown = t.get("id")
        truth = f" &middot; true class {t['true_class']}" if t.get("true_class") is not None else ""
        self.caption.value = (
            f'<span class="metro-image-camera">{html.escape(t["camera"])}</span> &middot; '
            f"{html.escape(t['timestamp'])} &middot; predicted <b>{t['result_class']}</b> "
            f"({t['result_probability']:.2f}){truth}{extra}<br>"
            f'<small>id <span class="metro-image-id">{html.escape(str(t.get("id")))}</span></small>'
        )

    def resend(self) -> None:
        """Send the card's images and caption to the page again (after a page may have missed one)."""
        for w in (self.frame, self.prepared, self.scores, self.caption):
            w.send_state()

    def clear(self, text: str) -> None:
        self.shown = None
        for img in (self.frame, self.prepared, self.scores):
            img.value = charts.empty_png()
        self.caption.value = text


class Gallery:
    """The newest uncertain images; follows the newest until the user steps back.

    A Test camera sends every image, also those scored above the confidence threshold: those are
    not uncertain, so they are left out (and counted under the gallery).
    """

    def __init__(self, client: ViewClient, keep: int = 100, camera: str | None = None) -> None:
        self.client = client
        self.items: deque[dict[str, Any]] = deque(maxlen=keep)
        self.camera = camera
        self._after = -1
        self.confident_left_out = 0
        self.index = -1
        self.card = ImageCard()
        self.follow = widgets.Checkbox(value=True, description="follow newest", indent=False)
        self.prev = widgets.Button(description="previous", icon="arrow-left")
        self.next = widgets.Button(description="next", icon="arrow-right")
        self.position = widgets.HTML()
        self.prev.on_click(lambda _b: self.move(-1))
        self.next.on_click(lambda _b: self.move(+1))
        self.widget = widgets.VBox(
            [widgets.HBox([self.prev, self.next, self.follow, self.position]), self.card.widget]
        )
        self.widget.add_class("metro-gallery")

    def refresh(self) -> None:
        if self._after < 0:
            last = self.client.page("UncertainPredictions", 0, 1)["last_seq"]
            self._after = max(0, last - self.items.maxlen)  # type: ignore[operator]
        page = self.client.page("UncertainPredictions", self._after, 200)["items"]
        if page:
            self._after = page[-1]["seq"]
            mine = [it["tuple"] for it in page if self.camera is None or it["tuple"]["camera"] == self.camera]
            kept, left_out = split_confident(mine)
            self.items.extend(kept)
            self.confident_left_out += left_out
        if self.follow.value or self.index < 0:
            self.index = len(self.items) - 1
        self._show()

    def move(self, delta: int) -> None:
        if not self.items:
            return
        self.follow.value = False
        self.index = min(len(self.items) - 1, max(0, self.index + delta))
        self._show()

    def _show(self) -> None:
        if not self.items:
            self.card.clear("no uncertain images yet")
            self.position.value = self._left_out()
            return
        self.index = min(self.index, len(self.items) - 1)
        self.card.show(self.items[self.index])
        self.position.value = (
            f'image <span class="metro-gallery-pos">{self.index + 1}</span> of '
            f'<span class="metro-gallery-count">{len(self.items)}</span>' + self._left_out()
        )

    def _left_out(self) -> str:
        if not self.confident_left_out:
            return ""
        return (
            f' &middot; <span class="metro-gallery-confident">{self.confident_left_out}</span> confident images '
            "from Test cameras (which send every image) left out"
        )
