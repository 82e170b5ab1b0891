"""The hub's HTTP API (FastAPI): views with long-poll, cameras, images, labels, models, health, audit.

Shapes are a contract that dashboards and `metro_app.client` rely on; the
OpenAPI spec is served at /openapi.json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from edgemnist.signing import SigningKey
from metro_app.access import AccessGate, Person
from metro_app.api import alerts, audit, cameras, health, images, labels, metrics, models, rollouts, views
from metro_app.api.deps import Hub
from metro_app.api.errors import on_invalid_request
from metro_app.api.guard import MAX_BODY_BYTES, BodyGuard
from metro_app.api.metrics import RequestTimer
from metro_app.monitoring.prometheus import HubMetrics
from metro_app.rollout.policy import Policy
from metro_app.store import Store
from metro_app.training.jobs import RetrainJobs

__all__ = ["create_app"]

# The first matching route answers: /models/{version}/rollout must precede /models/retrain/{job_id}.
_ROUTERS = (views, cameras, images, labels, alerts, rollouts, models, health, audit, metrics)


def create_app(
    store: Store,
    *,
    token: str | None = None,
    gate: AccessGate | None = None,
    health: Callable[[], dict[str, Any]] | None = None,
    retrain: RetrainJobs | None = None,
    max_body: int = MAX_BODY_BYTES,
    rollout_policy: Policy | None = None,
    signing_key: SigningKey | None = None,
    metrics: HubMetrics | None = None,
) -> FastAPI:
    """The API over one store; `health` adds the consumer's figures to GET /health, `retrain` runs retrains.

    `gate` says who may do what (`metro_app.access`); without one, `token` is the single shared
    token (its holder is the operator ``default``, reads are open). Roles are checked before a
    body is read; bodies over `max_body` bytes are refused (413); writes go to the audit trail.
    `metrics` is the app's Prometheus registry (GET /metrics); without one the app makes its own.
    """
    gate = gate or AccessGate(token=token)
    app = FastAPI(title="edge-mnist hub", version="1", description=__doc__)
    metrics = metrics or HubMetrics(store)
    app.state.hub = Hub.over(
        store, gate=gate, health=health, retrain=retrain, policy=rollout_policy, signing_key=signing_key,
        metrics=metrics,
    )  # fmt: skip

    def record(person: Person, route: str, path: str, status: int, detail: dict[str, Any]) -> None:
        store.add_audit(person.name, person.role, person.verified, route, path, status, detail)

    routes = [route for module in _ROUTERS for route in module.router.routes]
    app.add_middleware(BodyGuard, gate=gate, routes=routes, audit=record, max_body=max_body)
    app.add_middleware(RequestTimer, metrics=metrics, routes=routes)  # outermost: refusals are timed too
    app.add_exception_handler(RequestValidationError, on_invalid_request)  # type: ignore[arg-type]
    for module in _ROUTERS:
        app.include_router(module.router)
    return app
