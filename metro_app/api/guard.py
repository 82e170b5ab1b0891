"""ASGI middleware in front of the API: writes need the token before their body is read, and bodies are capped.

FastAPI reads and parses a request body before it runs dependencies, so a token
dependency alone lets an anonymous client make the hub buffer any amount of data.
This middleware looks at the headers first: a write without the right bearer token
gets 401 and its body is never read; a body larger than the cap gets 413, whether
it declares its length or streams it in chunks.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["MAX_BODY_BYTES", "WRITE_METHODS", "BodyGuard"]

MAX_BODY_BYTES = 8 * 2**20  # a label is ~100 bytes; a model upload a few hundred KB
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

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


class BodyGuard:
    """Refuse unauthenticated writes (401) and bodies over `max_body` bytes (413) before reading them."""

    def __init__(self, app: App, token: str | None, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self._expected = (token or "").encode()
        self.max_body = max_body

    def _authorised(self, scope: Scope) -> str | None:
        """None when the request carries the token; else why not."""
        if not self._expected:
            return "no API token is configured on the hub (EDGE_MNIST_API_TOKEN)"
        headers = dict(scope.get("headers") or [])
        scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("latin-1"), self._expected
        ):
            return None
        return "bad or missing bearer token"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        why = self._authorised(scope)
        if why is not None:
            await _reply(send, 401, why, [(b"www-authenticate", b"Bearer")])
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await _reply(send, 413, f"request body larger than {self.max_body} bytes")
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
                        await _reply(send, 413, f"request body larger than {self.max_body} bytes")
                    return {"type": "http.disconnect"}  # the app stops reading; its reply is dropped
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if replied:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, tracked)
