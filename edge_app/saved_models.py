"""The models an edge accepted from the models topic, kept in its state directory.

A restarted edge serves the last of them at once (`initial_model`), before its
watcher has read the topic again; ``--model`` is only the fallback.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

from edgemnist.errors import ModelError
from edgemnist.files import write_atomic
from edgemnist.model import Model, load_model
from edgemnist.wire.envelope import ModelEnvelope

__all__ = ["SavedModels", "initial_model", "initial_shadow"]

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class SavedModels:
    """Models this edge accepted, in its state directory, so a restarted edge serves them at once.

    ``<dir>/<version>.skops`` with its card ``<version>.json`` (version, sha256, parent,
    created, targets, accepted), ``current.json`` naming the one being served and
    ``shadow.json`` the one scoring beside it (a shadow envelope does not change ``current.json``).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def save(self, env: ModelEnvelope) -> Path:
        """Write the model and its card atomically and make it current; return the model's path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = _UNSAFE.sub("_", env.version)[:120] or "model"
        path = self.directory / f"{stem}.skops"
        card = {
            **env.header(),
            "file": path.name,
            "accepted": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        write_atomic(path, env.data)
        write_atomic(path.with_suffix(".json"), json.dumps(card, indent=2).encode())
        pointer = "shadow.json" if env.role == "shadow" else "current.json"
        write_atomic(
            self.directory / pointer, json.dumps({"version": env.version, "file": path.name}).encode()
        )
        return path

    def current_seq(self) -> int | None:
        """The publication number of the model last made current (its card's ``seq``), if it had one."""
        path = self.current()
        try:
            seq = json.loads(path.with_suffix(".json").read_text()).get("seq") if path else None
        except (OSError, ValueError, AttributeError):
            return None
        return seq if isinstance(seq, int) and not isinstance(seq, bool) else None

    def current(self, pointer_name: str = "current.json") -> Path | None:
        """The model file last made current, or None (nothing accepted yet, or unreadable pointer)."""
        pointer = self.directory / pointer_name
        try:
            name = json.loads(pointer.read_text())["file"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable (%s); ignoring the models accepted earlier", pointer, exc)
            return None
        path = self.directory / str(name)
        return path if path.parent == self.directory and path.is_file() else None

    def shadow(self) -> Path | None:
        """The shadow model file last accepted and not withdrawn, or None."""
        return self.current("shadow.json")

    def withdraw_shadow(self) -> None:
        (self.directory / "shadow.json").unlink(missing_ok=True)


def initial_shadow(saved_models: SavedModels) -> Model | None:
    """The shadow model a restarting edge scores beside its serving one: the last one not withdrawn."""
    saved = saved_models.shadow()
    if saved is None:
        return None
    try:
        return load_model(saved)
    except ModelError as exc:
        log.error("shadow model accepted earlier cannot be used (%s); no shadow scoring", exc)
        return None


def initial_model(configured: Path, saved_models: SavedModels, *, follow: bool = True) -> Model:
    """The model a starting edge serves: the last one it accepted from the topic, else ``--model``.

    An edge that does not follow the models topic (``--models-topic ''``) serves ``--model``.
    """
    saved = saved_models.current() if follow else None
    if saved is not None:
        try:
            model = load_model(saved)
        except ModelError as exc:
            log.error("model accepted earlier cannot be used (%s); serving %s instead", exc, configured)
        else:
            log.info(
                "serving model %s accepted earlier from the models topic (%s), not --model",
                model.version,
                saved,
            )
            return model
    return load_model(configured)
