"""GET /metrics: the hub's Prometheus metrics in the text format; `RequestTimer` times every request.

The route follows the hub's read rule like every other GET: with a tokens file and no
--public-reads a scraper sends a viewer's token (`authorization: {credentials: ...}` in
Prometheus' scrape config). `RequestTimer` is an ASGI middleware that observes each request's
seconds under its route template (``/models/{version}``, not the path), so the label set stays small.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from metro_app.api.deps import HubDep
from metro_app.api.guard import matching_route
from metro_app.monitoring.prometheus import CONTENT_TYPE, HubMetrics

__all__ = ["router", "RequestTimer"]

router = APIRouter()

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


@router.get("/metrics", response_class=Response)
async def metrics(hub: HubDep) -> Response:
    """Every metric of this hub (counters of this process, gauges over the shared store)."""
    body = await run_in_threadpool(hub.metrics.exposition) if hub.metrics is not None else b""
    return Response(content=body, media_type=CONTENT_TYPE)


class RequestTimer:
    """Observe each HTTP request's seconds in `metrics` under its route template and method.

    A request refused before routing (401, 403, 413) is found among `routes` the way `BodyGuard`
    finds it, so it is timed under its route too; one that matches no route is ``unmatched``.
    """

    def __init__(self, app: App, metrics: HubMetrics, routes: Sequence[Any] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = list(routes)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            found = scope.get("route") or matching_route(self.routes, scope)
            route = getattr(found, "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], time.perf_counter() - began)
