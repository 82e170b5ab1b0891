"""GET /health: is the hub up, how far behind is its consumer, what has it stored."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from metro_app.api.deps import HubDep

__all__ = ["router"]

router = APIRouter()


@router.get("/health")
def get_health(hub: HubDep) -> dict[str, Any]:
    counts = hub.store.counts()
    consumer = hub.health() if hub.health is not None else {}
    loops = consumer.get("loops") or {}
    stuck = sorted(name for name, loop in loops.items() if (loop or {}).get("stuck_seconds"))
    return {
        "status": "degraded" if consumer.get("store_failing") or stuck else "ok",
        "degraded": stuck,  # the loops that made no progress past a record for longer than their period
        "uptime": time.time() - hub.started,
        "consumer_lag": consumer.get("lag"),
        "stored": {k: counts[k] for k in ("metrics", "images", "labels", "models")},
        "dlq": counts["dead_letters"],
        "retention": consumer.get("retention"),  # rows pruned per kind, oldest kept; None: off or not a hub
        "consumer": consumer,
    }
