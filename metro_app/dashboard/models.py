"""The Models panel: the registry (versions, status, accuracies), which camera runs which version, and Retrain."""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as widgets

from metro_app.client import ApiError, ViewClient

__all__ = ["ModelsPanel", "models_table_html", "shadow_figures_html"]

_STATUS_COLOUR = {
    "serving": "#080",
    "published": "#080",
    "shadow": "#b60",
    "canary": "#b60",
    "superseded": "#777",
    "refused": "#c00",
    "rolled_back": "#c00",
}


def _status(m: dict[str, Any]) -> str:
    """The model's status; a superseded model says when (its `updated` time), in UTC.

    >>> _status({"status": "superseded", "updated": "2026-01-01T10:02:03.5Z"})
    '<b class="metro-model-status" style="color:#777">superseded</b> 2026-01-01 10:02:03'
    """
    status = str(m.get("status", ""))
    text = f'<b class="metro-model-status" style="color:{_STATUS_COLOUR.get(status, "#333")}">{html.escape(status)}</b>'
    if status == "superseded" and m.get("updated"):
        text += " " + html.escape(str(m["updated"])[:19].replace("T", " "))
    return text


def _pct(v: Any) -> str:
    return "&ndash;" if v is None else f"{100 * float(v):.1f}%"


def shadow_figures_html(sh: dict[str, Any] | None) -> str:
    """A shadow stage's figures in one line: agreement, labelled disagreements, who was right, p, labels needed.

    >>> shadow_figures_html({"images": 500, "agree": 450, "disagreements": 40, "labelled": 12,
    ...     "candidate_right": 1, "serving_right": 10, "p_value": 0.006, "needed": 9})
    'agree 90.0% of 500 &middot; 40 disagreements, 12 labelled: candidate right 1, serving right 10, p=0.006 &middot; 9 more labels needed'
    """
    if not sh or "images" not in sh:
        return ""
    images = int(sh.get("images") or 0)
    agree = (
        f"agree {100 * int(sh.get('agree') or 0) / images:.1f}% of {images}"
        if images
        else "no image scored yet"
    )
    p = sh.get("p_value")
    shown = "" if p is None else f", p={float(p):.3g}"
    needed = int(sh.get("needed") or 0)
    more = f" &middot; {needed} more labels needed" if needed else ""
    return (
        f"{agree} &middot; {sh.get('disagreements', 0)} disagreements, {sh.get('labelled', 0)} labelled: "
        f"candidate right {sh.get('candidate_right', 0)}, serving right {sh.get('serving_right', 0)}{shown}{more}"
    )


def _rollout(r: dict[str, Any] | None) -> str:
    """The model's newest rollout: its stage on its canary cameras, the shadow figures, and who started it."""
    if not r:
        return ""
    targets = ", ".join(str(t) for t in r.get("targets") or [])
    who = (
        f'<br><small class="metro-rollout-by">{html.escape(str(r["trigger"]))}</small>'
        if r.get("trigger")
        else ""
    )
    stage = str(r.get("stage") or r.get("state"))
    sh = r.get("shadow")
    # labels still needed mean something only while the shadow stage runs
    figures = shadow_figures_html(sh if stage == "shadow" or not sh else {**sh, "needed": 0})
    shadow = f'<br><small class="metro-shadow-figures">shadow: {figures}</small>' if figures else ""
    reason = html.escape(str(r.get("reason") or ""))
    return (
        f'<span class="metro-rollout" title="{reason}">{html.escape(stage)} on {html.escape(targets)}</span>'
        f'{shadow}<br><small class="metro-rollout-reason">{reason[:200]}</small>{who}'
    )


def _started_by(events: list[dict[str, Any]]) -> str:
    """Who started the retrain that made the model (its `started_by` event), as a small line."""
    said = [str(e.get("reason") or "") for e in events if e.get("status") == "started_by"]
    return f'<br><small class="metro-started-by">{html.escape(said[-1])}</small>' if said else ""


def _transitions(events: list[dict[str, Any]]) -> str:
    """candidate -> canary -> rolled_back, each with its time; the reason shows on hover."""
    events = [e for e in events if e.get("status") != "started_by"]
    return " &rarr; ".join(
        f'<span title="{html.escape(str(e.get("time")))}: {html.escape(str(e.get("reason") or ""))}">'
        f"{html.escape(str(e.get('status')))} {html.escape(str(e.get('time') or '')[11:19])}</span>"
        for e in events
    )


def _cameras(names: list[str], show: int = 6) -> str:
    """The cameras running a model: every name for a few, else how many and the first ones.

    >>> _cameras(["a", "b"]), _cameras([f"c{i}" for i in range(1000)], 2)
    ('a, b', '<b>1000 cameras</b>: c0, c1, &hellip;')
    """
    if len(names) <= show:
        return html.escape(", ".join(names))
    return f"<b>{len(names)} cameras</b>: {html.escape(', '.join(sorted(names)[:show]))}, &hellip;"


def models_table_html(models: list[dict[str, Any]], cameras: list[dict[str, Any]]) -> str:
    """One row per registered model, newest first, with the cameras now running it.

    >>> t = models_table_html([{"version": "m-2", "status": "published", "field_accuracy": 0.9}],
    ...                       [{"name": "Cam-h", "model_version": "m-2"}])
    >>> "m-2" in t and "Cam-h" in t and "90.0%" in t
    True
    >>> t = models_table_html([{"version": "m-3", "status": "rolled_back", "rollout": {"state": "rolled_back",
    ...     "targets": ["CamA"], "reason": "bound broken"}, "events": [{"status": "candidate",
    ...     "time": "2026-01-01T10:00:00Z", "reason": "imported"}, {"status": "canary", "time": "2026-01-01T10:01:00Z",
    ...     "reason": "for CamA"}]}], [])
    >>> "rolled_back on CamA" in t and "candidate 10:00:00</span> &rarr; " in t
    True
    """
    if not models:
        return (
            '<span class="metro-models-empty">no model in the registry yet: label images, then Retrain</span>'
        )
    running: dict[str, list[str]] = {}
    for c in cameras:
        running.setdefault(str(c.get("model_version")), []).append(c["name"])
    head = (
        "version",
        "status",
        "parent",
        "created",
        "base acc",
        "field acc",
        "parent field acc",
        "reason",
        "rollout",
        "transitions",
        "cameras",
    )
    rows = []
    for m in models:
        cells = [
            f"<code>{html.escape(str(m['version']))}</code>{_started_by(m.get('events') or [])}",
            _status(m),
            html.escape(str(m.get("parent") or "")),
            html.escape(str(m.get("created") or "")[:19]),
            _pct(m.get("base_accuracy")),
            _pct(m.get("field_accuracy")),
            _pct(m.get("parent_field_accuracy")),
            html.escape(str(m.get("reason") or ""))[:160],
            _rollout(m.get("rollout")),
            _transitions(m.get("events") or []),
            _cameras(running.get(str(m["version"]), [])),
        ]
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    th = "".join(f"<th>{h}</th>" for h in head)
    return (
        '<table class="metro-models-table" style="border-collapse:collapse;font-size:12px" border="1" '
        f'cellpadding="3"><tr>{th}</tr>{"".join(rows)}</table>'
    )


class ModelsPanel:
    """Shows the registry and starts a retrain at the hub, following its progress to the result."""

    def __init__(self, client: ViewClient, poll: float = 1.0) -> None:
        self.client = client
        self.poll = poll
        self.models: list[dict[str, Any]] = []
        self.table = widgets.HTML("models: not loaded yet")
        self.button = widgets.Button(description="Retrain", icon="cogs", button_style="primary")
        self.button.add_class("metro-retrain")
        self.button.on_click(lambda _b: self.retrain())
        self.progress = widgets.FloatProgress(value=0, min=0, max=1, description="retrain")
        self.status = widgets.HTML()
        self.status.add_class("metro-retrain-status")
        self._rollout_controls()
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.button, self.progress, self.status]),
                widgets.HBox(
                    [self.rollout_version, self.rollout_cameras, self.rollout_button, self.rollout_status]
                ),
                self.table,
            ]
        )
        self.widget.add_class("metro-models")
        self.rollouts: list[dict[str, Any]] = []
        self._busy = threading.Lock()
        self.last_result: dict[str, Any] | None = None

    def _rollout_controls(self) -> None:
        """Roll a registered candidate out to canary cameras: a shadow stage first, then the canary."""
        self.rollout_version = widgets.Dropdown(options=[], description="roll out", layout={"width": "330px"})
        self.rollout_version.add_class("metro-rollout-version")
        self.rollout_cameras = widgets.Text(
            placeholder="canary cameras, comma-separated", layout={"width": "240px"}
        )
        self.rollout_cameras.add_class("metro-rollout-cameras")
        self.rollout_button = widgets.Button(
            description="Roll out in shadow", icon="eye", layout={"width": "180px"}
        )
        self.rollout_button.add_class("metro-rollout-start")
        self.rollout_button.on_click(lambda _b: self.start_rollout())
        self.rollout_status = widgets.HTML()
        self.rollout_status.add_class("metro-rollout-status")

    def refresh(
        self,
        cameras: list[dict[str, Any]],
        models: list[dict[str, Any]] | None = None,
        rollouts: list[dict[str, Any]] | None = None,
    ) -> None:
        """Show the registry and rollouts (given, else read now) and which of `cameras` runs each model."""
        self.models = self.client.models() if models is None else models
        self.rollouts = self.client.rollouts(10) if rollouts is None else rollouts
        self.table.value = models_table_html(self.models, cameras)
        candidates = [str(m["version"]) for m in self.models if m.get("status") == "candidate"]
        if list(self.rollout_version.options) != candidates:
            self.rollout_version.options = candidates

    def start_rollout(self) -> dict[str, Any] | None:
        """POST the rollout of the chosen candidate to the named cameras; the answer shows beside the button."""
        version = self.rollout_version.value
        cameras = [c.strip() for c in self.rollout_cameras.value.split(",") if c.strip()]
        if not version or not cameras:
            self.rollout_status.value = (
                '<b style="color:#c00">choose a candidate and name the canary cameras</b>'
            )
            return None
        try:
            r = self.client.start_rollout(str(version), cameras)
        except ApiError as exc:
            self.rollout_status.value = f'<b style="color:#c00">rollout: {html.escape(str(exc))}</b>'
            return None
        self.rollout_status.value = f'<b class="metro-rollout-started">rollout {r["rollout"]} registered</b>: {html.escape(str(r["reason"]))}'
        return r

    def retrain(self, wait: bool = False, timeout: float = 600) -> threading.Thread | None:
        """Start a retrain job at the hub in a background thread; `wait` joins it."""
        if not self._busy.acquire(blocking=False):
            return None
        self.button.disabled = True
        thread = threading.Thread(target=self._retrain, args=(timeout,), name="metro-retrain", daemon=True)
        thread.start()
        if wait:
            thread.join()
        return thread

    def _retrain(self, timeout: float) -> None:
        try:
            job = self.client.retrain()
            job_id = job.get("job") or job.get("id")
            self.status.value = f"retrain job {html.escape(str(job_id))} started&hellip;"
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                state = self.client.retrain_job(str(job_id))
                self.progress.value = float(state.get("progress") or 0.0)
                if state.get("state") in ("done", "failed"):
                    self._show_result(state)
                    return
                self.status.value = (
                    f"retrain: {html.escape(str(state.get('stage') or state.get('state')))}&hellip;"
                )
                time.sleep(self.poll)
            self.status.value = f'<b style="color:#c00">retrain still running after {timeout:.0f} s</b>'
        except ApiError as exc:
            why = "a retrain is already running" if exc.status == 409 else str(exc)
            self.status.value = f'<b style="color:#c00">retrain: {html.escape(why)}</b>'
        finally:
            self.button.disabled = False
            self._busy.release()

    def _show_result(self, state: dict[str, Any]) -> None:
        result = state.get("result") or {}
        self.last_result = result
        self.progress.value = 1.0
        if state.get("state") == "failed":
            self.status.value = (
                f'<b style="color:#c00">retrain failed: {html.escape(str(state.get("error")))}</b>'
            )
            return
        verdict = "accepted and published" if result.get("accepted") else "refused"
        self.status.value = (
            f'<b class="metro-retrain-done">{html.escape(str(result.get("version")))} {verdict}</b>: '
            f"field accuracy {_pct(result.get('parent_field_accuracy'))} &rarr; {_pct(result.get('field_accuracy'))}, "
            f"base {_pct(result.get('parent_base_accuracy'))} &rarr; {_pct(result.get('base_accuracy'))} "
            f"({html.escape(str(result.get('reason') or ''))})"
        )
