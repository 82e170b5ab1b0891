"""Retrain requests from the control topic, kept in the store so that none is lost with a hub.

The control loop records a command's request here *before* it commits the command's offset.
A hub then claims pending requests (all of them at once: one retrain learns from every label)
and renews the claim while the retrain runs. A request whose hub stopped renewing is claimed
again by the next hub, or by the same hub restarted, and its `detail` says it was interrupted;
a retrain that fails leaves the request `failed` with the error. Claims are compare-and-set
updates, so two hubs sharing a store never both run one request.

>>> from metro_app.store import Store
>>> book = RetrainRequests(Store("sqlite://"))
>>> book.record([("control[0]@7", "control topic control")], now=100.0)
1
>>> book.claim("hub-a", now=101.0), book.claim("hub-b", now=102.0)
(['control[0]@7'], [])
>>> book.claim("hub-b", now=101.0 + STALE_SECONDS + 1)  # hub-a stopped renewing it
['control[0]@7']
>>> book.get("control[0]@7")["detail"]
'interrupted: hub-a stopped during its retrain; claimed again by hub-b'
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from metro_app.store.rows import iso
from metro_app.store.schema import retrain_requests

if TYPE_CHECKING:
    from metro_app.store import Store

__all__ = ["STALE_SECONDS", "RetrainRequests"]

STALE_SECONDS = 30.0  # a running request not renewed for this long was abandoned by its hub


class RetrainRequests:
    """The retrain_requests table of `store`."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._insert = store._insert

    def record(self, requests: Sequence[tuple[str, str]], *, now: float | None = None) -> int:
        """Add (id, trigger) requests as pending; one already recorded (a re-delivery) is kept as it is."""
        if not requests:
            return 0
        now = time.time() if now is None else now
        rows = [
            {"id": rid, "trigger": trigger, "state": "pending", "created": now, "updated": now}
            for rid, trigger in requests
        ]
        with self._engine.begin() as conn:
            return conn.execute(self._insert(retrain_requests).values(rows).on_conflict_do_nothing()).rowcount

    def claim(self, holder: str, *, now: float | None = None) -> list[str]:
        """Take every pending request, and every running one whose hub stopped renewing it; their ids."""
        now = time.time() if now is None else now
        c = retrain_requests.c
        abandoned = sa.and_(c.state == "running", c.updated < now - STALE_SECONDS)
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.select(c.id, c.state, c.holder)
                .where(sa.or_(c.state == "pending", abandoned))
                .order_by(c.created)
            ).all()
            taken = []
            for rid, state, before in rows:
                values: dict[str, Any] = {"state": "running", "holder": holder, "updated": now, "job": None}
                if state == "running":
                    values["detail"] = (
                        f"interrupted: {before} stopped during its retrain; claimed again by {holder}"
                    )
                done = conn.execute(
                    sa.update(retrain_requests)
                    .where(c.id == rid, sa.or_(c.state == "pending", abandoned))
                    .values(**values)
                ).rowcount
                if done:
                    taken.append(rid)
            return taken

    def renew(self, holder: str, *, now: float | None = None) -> int:
        """Mark this hub's running requests as still running; how many there are."""
        c = retrain_requests.c
        with self._engine.begin() as conn:
            return conn.execute(
                sa.update(retrain_requests)
                .where(c.holder == holder, c.state == "running")
                .values(updated=time.time() if now is None else now)
            ).rowcount

    def release(self, ids: Sequence[str]) -> None:
        """Give claimed requests back as pending (their job could not start)."""
        c = retrain_requests.c
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(retrain_requests).where(c.id.in_(ids), c.state == "running").values(state="pending")
            )

    def assign(self, ids: Sequence[str], job: str) -> None:
        """Name the retrain job that runs the claimed requests `ids`."""
        with self._engine.begin() as conn:
            conn.execute(sa.update(retrain_requests).where(retrain_requests.c.id.in_(ids)).values(job=job))

    def finish(
        self, ids: Sequence[str], job: str, state: str, detail: str | None = None, *, now: float | None = None
    ) -> int:
        """Close the requests `ids` that job `job` ran as `done` or `failed` (the error in `detail`)."""
        c = retrain_requests.c
        values: dict[str, Any] = {"state": state, "job": job, "updated": time.time() if now is None else now}
        if detail is not None:
            values["detail"] = detail
        with self._engine.begin() as conn:
            return conn.execute(
                sa.update(retrain_requests).where(c.id.in_(ids), c.state == "running").values(**values)
            ).rowcount

    def get(self, rid: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            row = (
                conn.execute(sa.select(retrain_requests).where(retrain_requests.c.id == rid))
                .mappings()
                .first()
            )
        return None if row is None else _as_dict(row)

    def counts(self) -> dict[str, int]:
        """How many requests are in each state, for /health."""
        c = retrain_requests.c
        with self._engine.connect() as conn:
            return {
                state: n for state, n in conn.execute(sa.select(c.state, sa.func.count()).group_by(c.state))
            }


def _as_dict(row: Any) -> dict[str, Any]:
    return {**row, "created": iso(row["created"]), "updated": iso(row["updated"])}
