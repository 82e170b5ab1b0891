"""The store's audit trail: one row per write on the hub, by whom, when, on which route, how it ended.

Part of `metro_app.store` (import `Store` from there). Rows are only ever added.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from metro_app.store.base import StoreBase
from metro_app.store.rows import iso
from metro_app.store.schema import audit

__all__ = ["AuditTables", "outcome_of"]


def outcome_of(status: int) -> str:
    """``done`` (2xx, or a command's 0), ``refused`` (401, 403) or ``failed``.

    >>> [outcome_of(s) for s in (0, 201, 403, 404, 1)]
    ['done', 'done', 'refused', 'failed', 'failed']
    """
    if status == 0 or 200 <= status < 300:
        return "done"
    return "refused" if status in (401, 403) else "failed"


class AuditTables(StoreBase):
    """Who did which write, and how it ended."""

    def add_audit(
        self,
        person: str,
        role: str | None,
        verified: bool,
        route: str,
        path: str,
        status: int,
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Record one write; returns its row id."""
        row = {
            "time": time.time(),
            "person": person,
            "role": role,
            "verified": verified,
            "route": route,
            "path": path,
            "status": status,
            "outcome": outcome_of(status),
            "detail": json.dumps(dict(detail or {}), default=str),
        }
        with self.engine.begin() as conn:
            return int(conn.execute(sa.insert(audit).returning(audit.c.id), row).scalar_one())

    def audit(
        self, after: int = 0, limit: int = 1000, person: str | None = None, route: str | None = None
    ) -> list[dict[str, Any]]:
        """Audit rows with id > `after`, oldest first; of one person and/or route when given."""
        q = sa.select(audit).where(audit.c.id > after)
        if person is not None:
            q = q.where(audit.c.person == person)
        if route is not None:
            q = q.where(audit.c.route == route)
        return [_audit_dict(r) for r in self._rows(q.order_by(audit.c.id).limit(limit))]


def _audit_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "time": iso(r.time),
        "person": r.person,
        "role": r.role,
        "verified": bool(r.verified),
        "route": r.route,
        "path": r.path,
        "status": r.status,
        "outcome": r.outcome,
        "detail": json.loads(r.detail),
    }
