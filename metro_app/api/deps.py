"""What every router shares: the hub's state on `app.state.hub`, the role check, the sequence bound.

`create_app` builds one `Hub` and puts it on the app; routes read it through the
`HubDep` dependency, so the routers are module-level and hold no state of their own.
A route that needs more than the hub's read rule declares it with `require(role)`;
`guard.BodyGuard` reads that declaration to refuse the request before its body is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request

from edgemnist.signing import SigningKey
from metro_app.access import AccessGate, Person, Role
from metro_app.monitoring.prometheus import HubMetrics
from metro_app.rollout.policy import Policy
from metro_app.store import Store
from metro_app.store.rollouts import RolloutBook
from metro_app.training.jobs import RetrainJobs
from metro_app.views.catalog import Views

__all__ = ["MAX_SEQ", "Hub", "HubDep", "hub", "require", "note", "by"]

MAX_SEQ = 2**63 - 1  # sequence numbers are 64-bit row ids; a larger ?after= is a 422, not a 500


@dataclass(frozen=True, slots=True)
class Hub:
    """The state one API app serves: the store and what is built over it, and who may use it."""

    store: Store
    views: Views
    book: RolloutBook
    policy: Policy
    retrain: RetrainJobs | None
    health: Callable[[], dict[str, Any]] | None
    started: float
    gate: AccessGate
    signing_key: SigningKey | None = field(default=None, repr=False)  # signs model files served
    metrics: HubMetrics | None = field(default=None, repr=False)  # GET /metrics (this app's own registry)

    @classmethod
    def over(
        cls,
        store: Store,
        *,
        gate: AccessGate,
        health: Callable[[], dict[str, Any]] | None,
        retrain: RetrainJobs | None,
        policy: Policy | None,
        signing_key: SigningKey | None = None,
        metrics: HubMetrics | None = None,
    ) -> Hub:
        """The state for an app over `store`; its uptime counts from now."""
        book = RolloutBook(store)
        return cls(
            store, Views(store), book, policy or Policy(), retrain, health, time.time(), gate, signing_key,
            metrics,
        )  # fmt: skip


async def hub(request: Request) -> Hub:
    """The app's `Hub`; async so that reading it costs no worker thread."""
    found: Hub = request.app.state.hub
    return found


HubDep = Annotated[Hub, Depends(hub)]


def require(role: Role) -> Callable[..., Person]:
    """A dependency: the request's person, who must hold `role` (else 401 or 403).

    `BodyGuard` has already refused such requests before their body was read; this check
    states the requirement on each route (and in the OpenAPI spec) and hands the route its person.
    """

    def person(hub: HubDep, authorization: Annotated[str | None, Header()] = None) -> Person:
        found, refusal = hub.gate.decide(authorization, role)
        if refusal is not None or found is None:
            status, detail = (refusal.status, refusal.detail) if refusal else (401, "no person")
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            raise HTTPException(status_code=status, detail=detail, headers=headers)
        return found

    person.role = role  # type: ignore[attr-defined]  # read by guard.route_role
    person.__name__ = f"require_{role}"
    return person


def by(person: Person) -> str:
    """ " by NAME" for a person a tokens file names, appended to a retrain's or rollout's trigger.

    Empty for the single shared token's `default`, so its triggers read as they always did.
    """
    return f" by {person.name}" if person.verified else ""


def note(request: Request, **detail: Any) -> None:
    """Add what a write was about (image id, label, version) to its audit row."""
    request.scope.setdefault("state", {}).setdefault("audit", {}).update(detail)
