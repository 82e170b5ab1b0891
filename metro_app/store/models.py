"""The store's model registry: each model's skops bytes, its status and the events that moved it.

Part of `metro_app.store` (import `Store` from there).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from edgemnist.errors import ModelError
from metro_app.store.base import StoreBase
from metro_app.store.modelrows import model_dict
from metro_app.store.schema import (
    FLEET_STATUSES,
    MODEL_STATUSES,
    model_events,
    model_registry,
)

__all__ = ["ModelTables"]


class ModelTables(StoreBase):
    """Registered models (candidate, canary, serving, published, superseded, refused, rolled back) and events."""

    def add_model(
        self,
        version: str,
        sha256: str,
        data: bytes,
        *,
        parent: str | None = None,
        status: str = "candidate",
        reason: str = "",
        card: Mapping[str, Any] | None = None,
        created: float | None = None,
    ) -> bool:
        """Register a model with its skops bytes and first event; False when the version exists."""
        _check_status(status)
        now = time.time()
        row = {
            "version": version,
            "sha256": sha256,
            "parent": parent,
            "status": status,
            "created": created if created is not None else now,
            "updated": now,
            "reason": reason,
            "card": json.dumps(dict(card or {})),
            "data": data,
        }
        with self.engine.begin() as conn:
            self._begin_write(conn)
            stmt = self._insert(model_registry).on_conflict_do_nothing().returning(model_registry.c.version)
            if not list(conn.execute(stmt, [row])):
                return False
            conn.execute(
                sa.insert(model_events), {"version": version, "status": status, "time": now, "reason": reason}
            )
        return True

    def note_model_event(self, version: str, event: str, reason: str) -> int:
        """Record an event of a model without moving its status (e.g. `publishing`, before the send).

        Returns the event's id, which grows with every event of the store: the publication number.
        """
        with self.engine.begin() as conn:
            self._begin_write(conn)
            result = conn.execute(
                sa.insert(model_events),
                {"version": version, "status": event, "time": time.time(), "reason": reason},
            )
            key = result.inserted_primary_key
            assert key is not None  # an INSERT of one row always has its key
            return int(key[0])

    def set_model_status(
        self, version: str, status: str, reason: str, *, supersede: bool = False
    ) -> list[str]:
        """Move a model to `status`, keeping the transition (time, reason) as an event.

        With `supersede` (a model published to every camera) every other model that was serving or
        published moves to ``superseded`` in the same transaction, so one model at a time is the
        fleet's. Returns the versions it superseded.
        """
        _check_status(status)
        now = time.time()
        with self.engine.begin() as conn:
            self._begin_write(conn)
            updated = conn.execute(
                sa.update(model_registry)
                .where(model_registry.c.version == version)
                .values(status=status, updated=now, reason=reason)
            ).rowcount
            if not updated:
                raise ModelError(f"no model version {version!r} in the registry")
            conn.execute(
                sa.insert(model_events), {"version": version, "status": status, "time": now, "reason": reason}
            )
            if not supersede:
                return []
            old = [
                r.version
                for r in conn.execute(
                    sa.select(model_registry.c.version).where(
                        model_registry.c.status.in_(FLEET_STATUSES), model_registry.c.version != version
                    )
                )
            ]
            why = f"superseded by {version}"
            if old:
                conn.execute(
                    sa.update(model_registry)
                    .where(model_registry.c.version.in_(old))
                    .values(status="superseded", updated=now, reason=why)
                )
                conn.execute(
                    sa.insert(model_events),
                    [{"version": v, "status": "superseded", "time": now, "reason": why} for v in old],
                )
            return old

    def _model_rows(self, where: Any = None) -> list[dict[str, Any]]:
        cols = [c for c in model_registry.c if c.name != "data"]
        q = sa.select(*cols)
        if where is not None:
            q = q.where(where)
        rows = self._rows(q.order_by(model_registry.c.created.desc(), model_registry.c.version.desc()))
        eq = sa.select(model_events).order_by(model_events.c.id)
        if where is not None:
            eq = eq.where(model_events.c.version.in_([r.version for r in rows]))
        events: dict[str, list[Any]] = {}
        for e in self._rows(eq):
            events.setdefault(e.version, []).append(e)
        return [model_dict(r, events.get(r.version, [])) for r in rows]

    def models(self) -> list[dict[str, Any]]:
        """Every registered model, newest first, with its events."""
        return self._model_rows()

    def model(self, version: str) -> dict[str, Any] | None:
        found = self._model_rows(model_registry.c.version == version)
        return found[0] if found else None

    def model_file(self, version: str) -> bytes | None:
        rows = self._rows(sa.select(model_registry.c.data).where(model_registry.c.version == version))
        return bytes(rows[0].data) if rows else None

    def current_model(self) -> dict[str, Any] | None:
        """The model the fleet should run: the most recently published (or serving) one still so."""
        q = (
            sa.select(model_registry.c.version)
            .where(model_registry.c.status.in_(FLEET_STATUSES))
            .order_by(model_registry.c.updated.desc(), model_registry.c.created.desc())
            .limit(1)
        )
        rows = self._rows(q)
        return self.model(rows[0].version) if rows else None


def _check_status(status: str) -> None:
    if status not in MODEL_STATUSES:
        raise ModelError(f"model status {status!r} is not one of {', '.join(MODEL_STATUSES)}")
