"""What every router shares: the hub's state on `app.state.hub`, the token check, the sequence bound.

`create_app` builds one `Hub` and puts it on the app; routes read it through the
`HubDep` dependency, so the routers are module-level and hold no state of their own.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request

from edgemnist.signing import SigningKey
from metro_app.rollout.policy import Policy
from metro_app.store import Store
from metro_app.store.rollouts import RolloutBook
from metro_app.training.jobs import RetrainJobs
from metro_app.views.catalog import Views

__all__ = ["MAX_SEQ", "Hub", "HubDep", "hub", "require_token"]

MAX_SEQ = 2**63 - 1  # sequence numbers are 64-bit row ids; a larger ?after= is a 422, not a 500


@dataclass(frozen=True, slots=True)
class Hub:
    """The state one API app serves: the store and what is built over it."""

    store: Store
    views: Views
    book: RolloutBook
    policy: Policy
    retrain: RetrainJobs | None
    health: Callable[[], dict[str, Any]] | None
    started: float
    token: str | None = field(default=None, repr=False)
    signing_key: SigningKey | None = field(default=None, repr=False)  # signs model files served

    @classmethod
    def over(
        cls,
        store: Store,
        *,
        token: str | None,
        health: Callable[[], dict[str, Any]] | None,
        retrain: RetrainJobs | None,
        policy: Policy | None,
        signing_key: SigningKey | None = None,
    ) -> Hub:
        """The state for an app over `store`; its uptime counts from now."""
        book = RolloutBook(store)
        return cls(
            store, Views(store), book, policy or Policy(), retrain, health, time.time(), token, signing_key
        )


async def hub(request: Request) -> Hub:
    """The app's `Hub`; async so that reading it costs no worker thread."""
    found: Hub = request.app.state.hub
    return found


HubDep = Annotated[Hub, Depends(hub)]


def require_token(hub: HubDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """401 unless the request carries the hub's bearer token.

    `BodyGuard` has already refused such writes before their body was read; this
    check states the requirement on each write route (and in the OpenAPI spec).
    """
    expected = (hub.token or "").encode()
    scheme, _, given = (authorization or "").partition(" ")
    ok = (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected)
    )
    if not ok:
        why = (
            "no API token is configured on the hub (EDGE_MNIST_API_TOKEN)"
            if not expected
            else "bad or missing bearer token"
        )
        raise HTTPException(status_code=401, detail=why, headers={"WWW-Authenticate": "Bearer"})
