"""The hub's HTTP API (FastAPI): views with long-poll, cameras, images, labels, models, health.

Shapes are a contract that dashboards and `metro_app.client` rely on; the
OpenAPI spec is served at /openapi.json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from edgemnist.signing import SigningKey
from metro_app.api import alerts, cameras, health, images, labels, models, rollouts, views
from metro_app.api.deps import Hub
from metro_app.api.errors import on_invalid_request
from metro_app.api.guard import MAX_BODY_BYTES, BodyGuard
from metro_app.rollout.policy import Policy
from metro_app.store import Store
from metro_app.training.jobs import RetrainJobs

__all__ = ["create_app"]

# The first matching route answers: /models/{version}/rollout must precede /models/retrain/{job_id}.
_ROUTERS = (views, cameras, images, labels, alerts, rollouts, models, health)


def create_app(
    store: Store,
    *,
    token: str | None,
    health: Callable[[], dict[str, Any]] | None = None,
    retrain: RetrainJobs | None = None,
    max_body: int = MAX_BODY_BYTES,
    rollout_policy: Policy | None = None,
    signing_key: SigningKey | None = None,
) -> FastAPI:
    """The API over one store; `health` adds the consumer's figures to GET /health, `retrain` runs retrains.

    Writes need the bearer token, checked before their body is read; bodies over `max_body`
    bytes are refused (413).
    """
    app = FastAPI(title="edge-mnist hub", version="1", description=__doc__)
    app.state.hub = Hub.over(
        store, token=token, health=health, retrain=retrain, policy=rollout_policy, signing_key=signing_key
    )
    app.add_middleware(BodyGuard, token=token, max_body=max_body)
    app.add_exception_handler(RequestValidationError, on_invalid_request)  # type: ignore[arg-type]
    for module in _ROUTERS:
        app.include_router(module.router)
    return app
