"""GET /alerts: camera alerts the hub raised."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from metro_app.api.deps import HubDep

__all__ = ["router"]

router = APIRouter()


@router.get("/alerts")
def list_alerts(
    hub: HubDep,
    status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
    max: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> dict[str, Any]:
    """Camera alerts (drift, departs from fleet, Camera Error labels), newest first."""
    return {"alerts": hub.store.alerts(status, max)}
