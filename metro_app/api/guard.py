"""ASGI middleware in front of the API: roles are checked before a body is read, bodies are capped, writes audited.

FastAPI reads and parses a request body before it runs dependencies, so a token
dependency alone lets an anonymous client make the hub buffer any amount of data.
This middleware looks at the headers first: it finds the route, reads the role the
route declares with `deps.require` (a write with no declared role needs an operator; a
read with none, the hub's read rule), and refuses with 401 or 403 before the body is
read; a body larger than the cap gets 413, whether it declares its length or streams it
in chunks. Every write by a known person, allowed or not, goes to the audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from metro_app.access import AccessGate, Person, Role

__all__ = ["MAX_BODY_BYTES", "WRITE_METHODS", "OPEN_PATHS", "BodyGuard", "route_role", "matching_route"]

MAX_BODY_BYTES = 8 * 2**20  # a label is ~100 bytes; a model upload a few hundred KB
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Reads that never need a token: a liveness probe and the API's own description (no data).
OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _reply(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


Audit = Callable[[Person, str, str, int, dict[str, Any]], None]


def route_role(route: Any) -> Role | None:
    """The role a route declares through a `deps.require(role)` dependency; None when it declares none."""
    stack = list(getattr(getattr(route, "dependant", None), "dependencies", []))
    while stack:
        dep = stack.pop()
        role = getattr(dep.call, "role", None)
        if role is not None:
            return role  # type: ignore[no-any-return]
        stack.extend(dep.dependencies)
    return None


def matching_route(routes: Sequence[Any], scope: Scope) -> Any | None:
    """The route that will answer this request (the first that matches, as the app's router picks)."""
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route
    return None


class BodyGuard:
    """Refuse requests whose person lacks the route's role (401, 403) and bodies over `max_body` bytes (413).

    `routes` are the app's API routes in the order its router tries them (each resource router's
    routes: FastAPI may nest included routers, so the app's own list is not flat).
    `audit(person, route, path, status, detail)` records each write by a known person.
    """

    def __init__(
        self,
        app: App,
        gate: AccessGate,
        routes: Sequence[Any] = (),
        audit: Audit | None = None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.gate = gate
        self.routes = list(routes)
        self.audit = audit
        self.max_body = max_body

    def _needs(self, scope: Scope) -> tuple[Role | None, str]:
        """(the role the request needs, None: the read rule) and the route's name for the audit."""
        route = matching_route(self.routes, scope)
        write = scope["method"] in WRITE_METHODS
        template = getattr(route, "path", None) or scope["path"]
        role = route_role(route) if route is not None else None
        if role is None and write:
            role = "operator" if route is not None else "viewer"  # unknown: any person, then 404/405
        return role, f"{scope['method']} {template}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        role, name = self._needs(scope)
        if role is None and scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1") or None
        person, refusal = self.gate.decide(auth, role)
        write = scope["method"] in WRITE_METHODS
        recorded = False

        async def record(status: int) -> None:
            """The audit row, written before the client sees the answer (once)."""
            nonlocal recorded
            if write and person is not None and not recorded:
                recorded = True
                await self._record(person, name, scope, status)

        if refusal is not None:
            await record(refusal.status)
            extra = [(b"www-authenticate", b"Bearer")] if refusal.status == 401 else []
            await _reply(send, refusal.status, refusal.detail, extra)
            return
        scope.setdefault("state", {})
        if not write:
            await self.app(scope, receive, send)
            return
        try:
            await self._capped(scope, receive, send, record)
        finally:
            await record(500)  # the app raised, or returned without an answer

    async def _record(self, person: Person, name: str, scope: Scope, status: int) -> None:
        if self.audit is None:
            return
        detail = dict((scope.get("state") or {}).get("audit") or {})
        await run_in_threadpool(self.audit, person, name, scope["path"], status, detail)

    async def _capped(
        self, scope: Scope, receive: Receive, send: Send, on_status: Callable[[int], Awaitable[None]]
    ) -> None:
        """Run the app on a body of at most `max_body` bytes; `on_status(status)` runs before the answer goes."""
        too_big = f"request body larger than {self.max_body} bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await on_status(413)
            await _reply(send, 413, too_big)
            return
        seen = 0
        started = replied = False

        async def counted() -> Message:
            nonlocal seen, replied
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    if not started and not replied:
                        replied = True
                        await on_status(413)
                        await _reply(send, 413, too_big)
                    return {"type": "http.disconnect"}  # the app stops reading; its reply is dropped
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if replied:
                return
            if message["type"] == "http.response.start":
                started = True
                await on_status(int(message["status"]))
            await send(message)

        await self.app(scope, counted, tracked)
