"""The store's camera alerts: raised once per key, closed, and claimed by one hub for sending.

Part of `metro_app.store` (import `Store` from there).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from metro_app.store.base import StoreBase
from metro_app.store.rows import iso
from metro_app.store.schema import (
    alerts,
)

__all__ = ["AlertTables"]


class AlertTables(StoreBase):
    """Camera alerts (drift, departs from fleet, camera errors) and which of them were sent."""

    def add_alert(
        self, key: str, camera: str, signal: str, started: str, message: str, evidence: Mapping[str, Any]
    ) -> int | None:
        """Open an alert; None when its key exists or the camera has an open alert on that signal."""
        c = alerts.c
        row = {
            "key": key,
            "camera": camera,
            "signal": signal,
            "started": started,
            "raised": time.time(),
            "status": "open",
            "message": message,
            "evidence": json.dumps(dict(evidence)),
        }
        with self.engine.begin() as conn:
            self._begin_write(conn)
            open_q = sa.select(c.id).where(c.camera == camera, c.signal == signal, c.status == "open")
            if conn.execute(open_q.limit(1)).first() is not None:
                return None
            stmt = self._insert(alerts).on_conflict_do_nothing().returning(c.id)
            got = list(conn.execute(stmt, [row]))
        return int(got[0].id) if got else None

    def close_alerts(self, camera: str, signal: str, reason: str) -> int:
        """Close the camera's open alerts on `signal`; returns how many."""
        c = alerts.c
        with self.engine.begin() as conn:
            self._begin_write(conn)
            return int(
                conn.execute(
                    sa.update(alerts)
                    .where(c.camera == camera, c.signal == signal, c.status == "open")
                    .values(status="closed", closed=time.time(), close_reason=reason)
                ).rowcount
            )

    def alerts(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Alerts, newest first; `status` = open | closed | None (all)."""
        q = sa.select(alerts)
        if status is not None:
            q = q.where(alerts.c.status == status)
        return [_alert_dict(r) for r in self._rows(q.order_by(alerts.c.id.desc()).limit(limit))]

    def open_alerts_of(self, cameras: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The open alerts of some cameras (a page of them), newest first."""
        out: dict[str, list[dict[str, Any]]] = {}
        names = sorted(set(cameras))
        for k in range(0, len(names), 500):
            q = sa.select(alerts).where(alerts.c.status == "open", alerts.c.camera.in_(names[k : k + 500]))
            for r in self._rows(q.order_by(alerts.c.id.desc())):
                out.setdefault(r.camera, []).append(_alert_dict(r))
        return out

    def claim_unsent_alerts(self) -> list[dict[str, Any]]:
        """Alerts no hub has sent yet, each claimed by this call (so one hub sends each once)."""
        out = []
        for r in self._rows(sa.select(alerts).where(alerts.c.sent.is_(None)).order_by(alerts.c.id)):
            with self.engine.begin() as conn:
                got = conn.execute(
                    sa.update(alerts)
                    .where(alerts.c.id == r.id, alerts.c.sent.is_(None))
                    .values(sent=time.time())
                ).rowcount
            if got:
                out.append(_alert_dict(r))
        return out

    def unclaim_alert(self, alert_id: int) -> None:
        """The send failed: another try later."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(sent=None))


def _alert_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "key": r.key,
        "camera": r.camera,
        "signal": r.signal,
        "started": r.started,
        "raised": iso(r.raised),
        "status": r.status,
        "closed": iso(r.closed) if r.closed is not None else None,
        "close_reason": r.close_reason,
        "message": r.message,
        "evidence": json.loads(r.evidence),
    }
