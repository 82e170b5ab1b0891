"""GET /cameras (a page of cameras' health, sorted worst first), /cameras/summary and /cameras/{name}.

Each camera's health is a row the store keeps as windows arrive (`metro_app.store.cameras`), so a
page costs the same at 10 cameras or 10,000.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from metro_app.api.deps import HubDep
from metro_app.views.fleet import MAX_LIMIT, Fleet

__all__ = ["router"]

router = APIRouter()

Sort = Literal["accuracy", "uncertain", "p99", "name"]


@router.get("/cameras")
async def cameras(
    hub: HubDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="cameras per page")] = 50,
    offset: Annotated[
        int, Query(ge=0, le=2**31, description="cameras to skip (the previous page's next_offset)")
    ] = 0,
    sort: Annotated[
        Sort,
        Query(
            description="worst first: lowest live accuracy, highest uncertain share, highest p99; "
            "or name A to Z; ties by name"
        ),
    ] = "name",
    q: Annotated[str | None, Query(max_length=300, description="only names holding this (any case)")] = None,
    alert: Annotated[bool, Query(description="1: only cameras with an open alert")] = False,
) -> dict[str, Any]:
    """{"cameras": [health], "total": cameras matching, "sort", "limit", "offset", "next_offset"}."""
    fleet = Fleet(hub.store)
    return await run_in_threadpool(fleet.page, sort=sort, limit=limit, offset=offset, q=q, alert=alert)


@router.get("/cameras/summary")
async def summary(
    hub: HubDep,
    worst: Annotated[int, Query(ge=0, le=100, description="cameras in each worst-N list")] = 5,
) -> dict[str, Any]:
    """Counts (cameras, active, alerting, alerts), the fleet's median uncertain share, the worst cameras."""
    return await run_in_threadpool(Fleet(hub.store).summary, worst)


@router.get("/cameras/{name:path}")
async def camera(
    hub: HubDep,
    name: str,
    recent_windows: Annotated[int, Query(ge=0, le=500, description="also its newest N metrics windows")] = 0,
    recent_images: Annotated[int, Query(ge=0, le=100, description="also its newest N uncertain images")] = 0,
    hourly: Annotated[int, Query(ge=0, le=24 * 366, description="also its newest N hourly roll-ups")] = 0,
) -> dict[str, Any]:
    """One camera's health (and, when asked, its newest windows, images and hourly roll-ups, oldest
    first, under the same keys); 404 for a camera that never sent a metrics window."""
    fleet = Fleet(hub.store)
    got = await run_in_threadpool(
        fleet.camera, name, recent_windows=recent_windows, recent_images=recent_images, hourly=hourly
    )
    if got is None:
        raise HTTPException(status_code=404, detail=f"no camera named {name!r} has sent a metrics window")
    return got
