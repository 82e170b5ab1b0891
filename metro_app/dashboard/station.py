"""The Correction Station: a person labels uncertain images; Training Upload stores the labels at the hub.

Labels chosen here stay local until uploaded; an upload sends the latest
label of each image, once. Reopening the station reads the stored labels back.
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets

from metro_app.client import ApiError, ViewClient
from metro_app.dashboard.gallery import ImageCard
from metro_app.dashboard.keys import KeyListener
from metro_app.labels.quality import LABELS

__all__ = [
    "LABELS",
    "ORDERS",
    "CorrectionStation",
    "StationState",
    "order_items",
    "margin",
    "labellers_html",
    "shadow_needs_html",
]

ORDERS = {"least confident first": "lowest", "smallest margin first": "margin", "newest first": "newest"}


def margin(item: dict[str, Any]) -> float:
    """Top score minus the runner-up: small when the model hesitates between two digits.

    >>> margin({"predictions": [0.1, 0.45, 0.4] + [0.05] * 7})
    0.05
    """
    top = sorted(item["predictions"], reverse=True)
    return round(top[0] - top[1], 12)


def order_items(items: list[dict[str, Any]], order: str, shadow: str | None = None) -> list[dict[str, Any]]:
    """Newest-first `items` in the station's order: ``lowest`` probability, smallest ``margin``, ``newest``.

    With `shadow` (the version of a candidate in its shadow stage), its disagreement images come
    first: their labels decide the rollout.

    >>> items = [{"id": "a", "result_probability": 0.4}, {"id": "b", "result_probability": 0.9,
    ...          "shadow_version": "m-2"}, {"id": "c", "result_probability": 0.3}]
    >>> [t["id"] for t in order_items(items, "lowest", shadow="m-2")]
    ['b', 'c', 'a']
    """
    if order == "lowest":
        items = sorted(items, key=lambda t: t["result_probability"])
    elif order == "margin":
        items = sorted(items, key=margin)
    else:
        items = list(items)
    if shadow is not None:
        items.sort(
            key=lambda t: t.get("shadow_version") != shadow
        )  # stable: the order within each part holds
    return items


def shadow_needs_html(rollout: dict[str, Any] | None) -> str:
    """What the running shadow stage still needs, e.g. "7 more labels decide the canary on Line3".

    >>> shadow_needs_html({"rollout": 4, "version": "m-2", "stage": "shadow", "targets": ["Line3"],
    ...     "shadow": {"needed": 7, "candidate_right": 9, "serving_right": 4, "disagreements": 30}})[:79]
    '<div class="metro-shadow-needs"><b>7 more labels</b> decide the canary on Line3'
    """
    if not rollout or rollout.get("stage") != "shadow":
        return ""
    sh = rollout.get("shadow") or {}
    where = html.escape(", ".join(str(t) for t in rollout.get("targets") or []))
    needed = int(sh.get("needed") or 0)
    head = (
        f"<b>{needed} more labels</b> decide the canary on {where}"
        if needed
        else f"enough labels on {where}: the verdict waits for a clear lead"
    )
    return (
        f'<div class="metro-shadow-needs">{head}: candidate <code>{html.escape(str(rollout.get("version")))}'
        f"</code> runs in shadow; its disagreements with the serving model come first below "
        f"(candidate right {sh.get('candidate_right', 0)}, serving right {sh.get('serving_right', 0)}, "
        f"{sh.get('disagreements', 0)} disagreements stored)</div>"
    )


def _percent(v: float | None) -> str:
    return "&ndash;" if v is None else f"{v:.0%}"


def labellers_html(body: dict[str, Any]) -> str:
    """Each labeller's count and agreement rate (GET /labellers) as a small table, and what happens to
    the labels at the next Retrain (the settling rule of `metro_app.labels.settle`).

    >>> h = labellers_html({"images": 7, "conflicts": 2, "labellers": []})
    >>> "7</span> images labelled" in h and "wait for a second opinion" in h
    True
    """
    rows = "".join(
        f"<tr><td>{html.escape(r['labeller'])}</td><td>{r['labels']}</td><td>{r['compared']}</td>"
        f"<td>{_percent(r['agreement'])}</td><td>{r['conflicts']}</td></tr>"
        for r in body.get("labellers", [])
    )
    conflicts = int(body.get("conflicts", 0))
    waiting = (
        f'; <span class="metro-conflict-count">{conflicts}</span> of them have labellers who disagree: '
        "those wait for a second opinion (a third labeller's vote or a reviewer's resolution) before "
        "they train"
        if conflicts
        else '; <span class="metro-conflict-count">0</span> in conflict'
    )
    return (
        f'<div class="metro-labellers"><b>Labellers</b> (<span class="metro-labelled-images">'
        f"{body.get('images', 0)}</span> images labelled; each settled digit label trains at the next "
        f"Retrain, labels that are not digits are counted, not trained on{waiting})"
        '<table border="1" cellpadding="2" style="border-collapse:collapse;font-size:12px">'
        "<tr><th>labeller</th><th>labels</th><th>shared images</th><th>agreement</th><th>open conflicts</th></tr>"
        f"{rows}</table></div>"
    )


@dataclass
class StationState:
    """The labelling session without widgets: items, cursor, chosen labels, undo history.

    >>> s = StationState([{"id": "a", "result_class": 1}, {"id": "b", "result_class": 2}])
    >>> s.choose("7"); s.index, s.counter()
    (1, '1 of 2 labelled, 1 left')
    >>> s.undo(); s.index, s.pending()
    (0, {})
    """

    items: list[dict[str, Any]]
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    chosen: dict[str, str] = field(default_factory=dict)
    index: int = 0
    history: list[tuple[int, str, str | None]] = field(default_factory=list)
    conflicts: dict[str, dict[str, str]] = field(default_factory=dict)  # image id -> labeller -> label

    @property
    def current(self) -> dict[str, Any] | None:
        return self.items[self.index] if self.items else None

    def label_of(self, item: dict[str, Any]) -> str | None:
        stored = self.stored.get(item["id"])
        return self.chosen.get(item["id"], stored["label"] if stored else None)

    def shown_label(self, item: dict[str, Any]) -> str:
        """The label the station highlights: chosen, else stored, else the model's prediction."""
        return self.label_of(item) or str(item["result_class"])

    def move(self, delta: int) -> None:
        if self.items:
            self.index = min(len(self.items) - 1, max(0, self.index + delta))

    def choose(self, label: str) -> None:
        item = self.current
        if item is None or label not in LABELS:
            return
        self.history.append((self.index, item["id"], self.chosen.get(item["id"])))
        self.chosen[item["id"]] = label
        self.move(+1)

    def undo(self) -> None:
        if not self.history:
            return
        index, image_id, before = self.history.pop()
        if before is None:
            self.chosen.pop(image_id, None)
        else:
            self.chosen[image_id] = before
        self.index = index

    def labelled(self) -> int:
        return sum(1 for it in self.items if self.label_of(it) is not None)

    def counter(self) -> str:
        k, n = self.labelled(), len(self.items)
        return f"{k} of {n} labelled, {n - k} left"

    def pending(self) -> dict[str, str]:
        """Image id -> latest chosen label, where it differs from what the hub stores."""
        return {i: lab for i, lab in self.chosen.items() if (self.stored.get(i) or {}).get("label") != lab}


class CorrectionStation:
    """Label a snapshot of uncertain images with keys or clicks, then upload the labels for training."""

    def __init__(
        self,
        client: ViewClient,
        *,
        size: int = 24,
        order: str = "lowest",
        camera: str | None = None,
        labeller: str = "dashboard",
    ) -> None:
        self.client = client
        self.state = StationState([])
        self.card = ImageCard()
        self._snapshot_controls(size, order, camera, labeller)
        self.counter = widgets.HTML()
        self.counter.add_class("metro-station-counter")
        self.unseen = widgets.HTML()
        self.unseen.add_class("metro-unseen-labels")
        self.shadow_needs = widgets.HTML()  # what a running shadow stage still needs
        self.shadow_rollout: dict[str, Any] | None = None
        self.labellers = widgets.HTML()
        self.buttons = self._label_buttons()
        nav = self._nav_buttons()
        self._upload_controls()
        self.keys = KeyListener(
            self.on_key, hint="Keys: 0-9 label, \u2190/\u2192 move, Backspace undo, Space skip"
        )
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.camera, self.order, self.size, self.reload]),
                widgets.HBox([self.labeller, self.counter]),
                self.unseen,
                self.shadow_needs,
                self.labellers,
                self.card.widget,
                widgets.HBox(self.buttons[:10], layout={"flex_flow": "row wrap"}),
                widgets.HBox(self.buttons[10:]),
                widgets.HBox(nav),
                self.keys,
                widgets.HBox([self.upload_button, self.progress, self.status]),
            ]
        )
        self.widget.add_class("metro-station")
        self._uploading = threading.Lock()
        # the live thread's first load and a person's clicks (kernel thread) must not interleave
        self._lock = threading.RLock()

    def _snapshot_controls(self, size: int, order: str, camera: str | None, labeller: str) -> None:
        """What the next snapshot takes (size, order, camera), who labels, and the Load button."""
        self.size = widgets.BoundedIntText(
            value=size, min=1, max=500, description="images", layout={"width": "160px"}
        )
        self.order = widgets.Dropdown(
            options=list(ORDERS), value=next(k for k, v in ORDERS.items() if v == order), description="order"
        )
        self.camera = widgets.Dropdown(options=[("all cameras", "")], value="", description="camera")
        if camera:
            self.camera.options = [("all cameras", ""), (camera, camera)]
            self.camera.value = camera
        self.labeller = widgets.Text(value=labeller, description="labeller")
        self.labeller.add_class("metro-labeller")
        self.reload = widgets.Button(description="Load snapshot", icon="refresh")
        self.reload.add_class("metro-reload")
        self.reload.on_click(lambda _b: self.load())

    def _label_buttons(self) -> list[widgets.Button]:
        buttons = []
        for k, label in enumerate(LABELS):
            b = widgets.Button(description=label, layout={"width": "42px" if len(label) == 1 else "104px"})
            b.add_class(f"metro-label-{k}")
            b.on_click(lambda _b, lab=label: self.choose(lab))
            buttons.append(b)
        return buttons

    def _nav_buttons(self) -> list[widgets.Button]:
        nav = []
        for text, icon, action, cls in (
            ("previous", "arrow-left", lambda: self.move(-1), "metro-prev"),
            ("skip", "forward", lambda: self.move(+1), "metro-skip"),
            ("next", "arrow-right", lambda: self.move(+1), "metro-next"),
            ("undo", "undo", self.undo, "metro-undo"),
        ):
            b = widgets.Button(description=text, icon=icon)
            b.add_class(cls)
            b.on_click(lambda _b, a=action: a())
            nav.append(b)
        return nav

    def _upload_controls(self) -> None:
        self.upload_button = widgets.Button(
            description="Training Upload", icon="upload", button_style="danger"
        )
        self.upload_button.add_class("metro-upload")
        self.upload_button.on_click(lambda _b: self.upload())
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="upload")
        self.status = widgets.HTML()
        self.status.add_class("metro-upload-status")

    # loading ------------------------------------------------------------------------------------

    def _snapshot(self) -> list[dict[str, Any]]:
        n, camera = self.size.value, self.camera.value or None
        items = [it["tuple"] for it in self.client.recent("UncertainPredictions", max(200, 4 * n))]
        cams = sorted({t["camera"] for t in items} | ({camera} if camera else set()))
        self.camera.options = [("all cameras", "")] + [(c, c) for c in cams]
        if camera:
            items = [t for t in items if t["camera"] == camera]
        items.reverse()  # newest first
        running = [r for r in self.client.rollouts(10) if r.get("stage") == "shadow"]
        self.shadow_rollout = running[0] if running else None
        self.shadow_needs.value = shadow_needs_html(self.shadow_rollout)
        shadow = None if self.shadow_rollout is None else str(self.shadow_rollout["version"])
        return order_items(items, ORDERS[self.order.value], shadow)[:n]

    def load(self) -> CorrectionStation:
        """Take a new snapshot of uncertain images and read their stored labels from the hub.

        A person's Load snapshot also sends the station's whole state to the page again: an
        update sent while the page was still connecting can be lost, and a value set again
        unchanged is not sent, so without this the card could stay blank.
        """
        with self._lock:
            self._load()
            for w in (self.counter, self.status, self.labellers):
                w.send_state()
            self.card.resend()
            return self

    def load_if_empty(self) -> None:
        """Load a first snapshot unless one is shown already (the live thread's call)."""
        with self._lock:
            if not self.state.items:
                self._load()

    def _load(self) -> CorrectionStation:
        try:
            items = self._snapshot()
            stored = {}
            for t in items:
                labels = self.client.labels(t["id"])
                if labels:
                    stored[t["id"]] = labels[-1]
            conflicts = {c["image_id"]: c["votes"] for c in self.client.conflicts()}
            self.labellers.value = labellers_html(self.client.labellers())
        except ApiError as exc:
            self.status.value = f'<b style="color:#c00">{html.escape(str(exc))}</b>'
            return self
        self.state = StationState(items, stored, conflicts=conflicts)
        self.status.value = f"loaded {len(items)} uncertain images, {len(stored)} already labelled"
        self._show()
        return self

    def refresh_labellers(self) -> None:
        """Read GET /labellers again (the live thread calls it when the hub's label count changed)."""
        self.labellers.value = labellers_html(self.client.labellers())

    def show_unseen(self, n: int, version: str | None) -> None:
        """Say how many stored labels the serving model has not learnt from yet."""
        model = f"model <code>{html.escape(version)}</code>" if version else "the base model"
        self.unseen.value = (
            f"<b>{n}</b> stored labels not yet seen by {model}: press Retrain to learn from them"
        )

    def show_shadow(self, rollouts: list[dict[str, Any]]) -> None:
        """Say what a running shadow stage still needs (the live thread's call, from the Models panel's list)."""
        running = [r for r in rollouts if r.get("stage") == "shadow"]
        self.shadow_rollout = running[0] if running else None
        self.shadow_needs.value = shadow_needs_html(self.shadow_rollout)

    # actions ------------------------------------------------------------------------------------

    def on_key(self, key: str) -> None:
        if key.isdigit():
            self.choose(key)
        elif key == "ArrowLeft":
            self.move(-1)
        elif key in ("ArrowRight", " "):
            self.move(+1)
        elif key == "Backspace":
            self.undo()

    def choose(self, label: str) -> None:
        with self._lock:
            self.state.choose(label)
            self._show()

    def move(self, delta: int) -> None:
        with self._lock:
            self.state.move(delta)
            self._show()

    def undo(self) -> None:
        with self._lock:
            self.state.undo()
            self._show()

    def _show(self) -> None:
        with self._lock:
            try:
                self._draw()
            except Exception as exc:  # noqa: BLE001 - say what went wrong instead of a blank card
                self.status.value = (
                    f'<b style="color:#c00">cannot show the image: {html.escape(type(exc).__name__)}: '
                    f"{html.escape(str(exc))}</b>"
                )
                raise

    def _draw(self) -> None:
        s = self.state
        self.counter.value = f'<b class="metro-counter">{s.counter()}</b> ({len(s.pending())} not uploaded)'
        item = s.current
        if item is None:
            self.card.clear("no uncertain images at the hub yet: press Load snapshot")
            return
        label = s.label_of(item)
        stored = s.stored.get(item["id"])
        where = (
            f" &middot; stored label <b>{html.escape(stored['label'])}</b> by {html.escape(stored['labeller'])}"
            if stored
            else ""
        )
        chosen = (
            f" &middot; your label <b>{html.escape(label or '')}</b>" if item["id"] in s.chosen else where
        )
        if item.get("shadow_version") is not None:
            chosen += (
                f' &middot; <b class="metro-disagreement">serving model says {item.get("result_class")}, '
                f"candidate <code>{html.escape(str(item['shadow_version']))}</code> says "
                f"{item.get('shadow_predicted')}</b>"
            )
        votes = s.conflicts.get(item["id"])
        if votes:
            said = ", ".join(f"{html.escape(k)} says {html.escape(v)}" for k, v in sorted(votes.items()))
            chosen += (
                f' &middot; <b class="metro-conflict" style="color:#c00">&#9888; labellers disagree: {said}'
                "</b> (waits for a second opinion before it trains)"
            )
        self.card.show(item, f" &middot; image <b>{s.index + 1}</b> of {len(s.items)}{chosen}")
        shown = s.shown_label(item)
        for b in self.buttons:
            b.button_style = ("success" if label else "info") if b.description == shown else ""

    # upload -------------------------------------------------------------------------------------

    def sign_in(self, person: dict[str, Any] | None) -> None:
        """A person the hub knows from their token labels under their own name: the field shows it, fixed."""
        if person is not None and person.get("verified"):
            self.labeller.value = person["name"]
            self.labeller.disabled = True

    def upload(self, wait: bool = False) -> threading.Thread | None:
        """Send the latest label of each changed image in a background thread; `wait` joins it."""
        if not self._uploading.acquire(blocking=False):
            return None
        self.upload_button.disabled = True
        thread = threading.Thread(target=self._upload, name="metro-upload", daemon=True)
        thread.start()
        if wait:
            thread.join()
        return thread

    def _upload(self) -> None:
        try:
            pending = self.state.pending()
            by_id = {t["id"]: t for t in self.state.items}
            labeller = self.labeller.value.strip() or "dashboard"
            self.progress.max, self.progress.value = max(1, len(pending)), 0
            self.status.value = f"uploading {len(pending)} labels&hellip;"
            done = 0
            for image_id, label in pending.items():
                item = by_id.get(image_id, {})
                stored = self.client.add_label(
                    image_id,
                    label,
                    labeller,
                    model_version=item.get("model_version"),
                    previous_prediction=item.get("result_class"),
                )
                self.state.stored[image_id] = stored
                done += 1
                self.progress.value = done
            self.status.value = (
                f'<b class="metro-upload-done" style="color:#080">Uploaded {done} labels</b> for training '
                f"(labeller {html.escape(labeller)})"
            )
            self.refresh_labellers()
        except ApiError as exc:
            self.status.value = f'<b style="color:#c00">upload failed: {html.escape(str(exc))}</b>'
        finally:
            self._show()
            self.upload_button.disabled = False
            self._uploading.release()
