"""GET /views and GET /views/{name}: pages of a view's tuples, long-polled for newer ones."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from metro_app.api.deps import MAX_SEQ, HubDep
from metro_app.views.catalog import View, Views

__all__ = ["router"]

_POLL_SECONDS = 0.1

router = APIRouter()


def _view_or_404(views: Views, name: str) -> View:
    view = views.get(name)
    if view is None:
        known = ", ".join(v.name for v in views)
        raise HTTPException(status_code=404, detail=f"no view named {name!r}; views: {known}")
    return view


async def _long_poll(view: View, after: int, limit: int, wait: float) -> list[tuple[int, Any]]:
    deadline = time.monotonic() + wait
    while True:
        items = await run_in_threadpool(view.page, after, limit)
        if items or time.monotonic() >= deadline:
            return items
        while time.monotonic() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
            if await run_in_threadpool(view.last_seq) > after:
                break


@router.get("/views")
def list_views(hub: HubDep) -> dict[str, Any]:
    with hub.store.reading():
        return {"views": [{"name": v.name, "last_seq": v.last_seq(), "size": v.size()} for v in hub.views]}


@router.get("/views/{name}")
async def read_view(
    hub: HubDep,
    name: str,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="return tuples with seq > after")] = 0,
    max: Annotated[int, Query(ge=1, le=1000, description="at most this many tuples")] = 100,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for a newer tuple")] = 0,
) -> dict[str, Any]:
    view = _view_or_404(hub.views, name)
    items = await _long_poll(view, after, max, wait)
    last = await run_in_threadpool(view.last_seq)
    return {"name": view.name, "items": [{"seq": s, "tuple": t} for s, t in items], "last_seq": last}
