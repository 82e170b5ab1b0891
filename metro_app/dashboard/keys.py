"""Page-wide key presses for widgets: ipywidgets has none, so a tiny anywidget listens on the document.

Keys typed into a text field are left alone, so a labeller can type a name.
Works in JupyterLab, Notebook 7 and Voila (anywidget ships its front-end extension).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

__all__ = ["KEYS", "KeyListener"]

KEYS = tuple("0123456789") + ("ArrowLeft", "ArrowRight", "Backspace", " ")

_ESM = """
function render({ model, el }) {
  const keys = new Set(JSON.parse(model.get("listen")));
  el.classList.add("metro-keys");
  el.textContent = model.get("hint");
  const onKey = (e) => {
    const t = e.target;
    const typing = t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
    if (typing || e.ctrlKey || e.metaKey || e.altKey || !keys.has(e.key)) return;
    e.preventDefault();
    // a focused button would also "click" on the key's release (Space): drop the focus first
    if (document.activeElement && document.activeElement.tagName === "BUTTON") document.activeElement.blur();
    model.send({ key: e.key });
  };
  document.addEventListener("keydown", onKey);
  return () => document.removeEventListener("keydown", onKey);
}
export default { render };
"""


class KeyListener(anywidget.AnyWidget):
    """Calls `on_key(key)` in the kernel for each listened key pressed anywhere on the page."""

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    listen = traitlets.Unicode("[]").tag(sync=True)
    hint = traitlets.Unicode("").tag(sync=True)

    def __init__(self, on_key: Callable[[str], Any], keys: tuple[str, ...] = KEYS, hint: str = "") -> None:
        import json

        super().__init__(listen=json.dumps(list(keys)), hint=hint)
        self._on_key = on_key
        self.on_msg(self._handle)

    def _handle(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and isinstance(content.get("key"), str):
            self._on_key(content["key"])
