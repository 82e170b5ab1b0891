"""Tallies over the store for the hub's Prometheus gauges: cameras active and alerting, rows per state.

Part of `metro_app.store` (use it through `Store.tallies()`). Every query is bounded: active
cameras read the metrics windows of the last few minutes through the ``bucket`` index, the other
tables (alerts, models, rollouts, retrain requests) are small.

>>> from metro_app.store import Store
>>> Store("sqlite://").tallies().states()
{'models': {}, 'rollouts': {}, 'retrain_requests': {}}
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from metro_app.store.rows import FLEET_BUCKET_SECONDS
from metro_app.store.schema import alerts, metrics, model_registry, retrain_requests, rollouts

__all__ = ["Tallies"]


class Tallies:
    """Counts the hub's /metrics endpoint reads on each scrape."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def cameras(self, since: float) -> dict[str, int]:
        """Cameras with a metrics window timed at or after `since` (active), and with an open alert."""
        floor = int(since // FLEET_BUCKET_SECONDS) * FLEET_BUCKET_SECONDS
        active = sa.select(sa.func.count(sa.distinct(metrics.c.camera))).where(
            metrics.c.bucket >= floor, metrics.c.ts >= since
        )
        alerting = sa.select(sa.func.count(sa.distinct(alerts.c.camera))).where(alerts.c.status == "open")
        with self._engine.connect() as conn:
            return {
                "active": int(conn.execute(active).scalar_one()),
                "alerting": int(conn.execute(alerting).scalar_one()),
            }

    def states(self) -> dict[str, dict[str, int]]:
        """Models per status, rollouts per state, retrain requests per state."""
        out: dict[str, dict[str, int]] = {}
        with self._engine.connect() as conn:
            for name, column in (
                ("models", model_registry.c.status),
                ("rollouts", rollouts.c.state),
                ("retrain_requests", retrain_requests.c.state),
            ):
                rows: Any = conn.execute(sa.select(column, sa.func.count()).group_by(column))
                out[name] = {str(state): int(n) for state, n in rows}
        return out
