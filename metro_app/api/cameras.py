"""GET /cameras: each camera's health, the CameraHealth view's current tuples."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from metro_app.api.deps import HubDep

__all__ = ["router"]

router = APIRouter()


@router.get("/cameras")
def cameras(hub: HubDep) -> dict[str, Any]:
    return {"cameras": [t for _, t in hub.views.camera_health.snapshot()]}
