"""GET /audit (operator): every write on the hub, by whom, when, on which route, how it ended; GET /whoami."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query

from metro_app.access import Person
from metro_app.api.deps import MAX_SEQ, HubDep, require

__all__ = ["router"]

router = APIRouter()


@router.get("/audit")
def list_audit(
    hub: HubDep,
    _person: Annotated[Person, Depends(require("operator"))],
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    max: Annotated[int, Query(ge=1, le=10000)] = 1000,
    person: str | None = None,
    route: str | None = None,
) -> dict[str, Any]:
    """Audit rows with id > `after`, oldest first: time, person, role, verified, route, path, status, outcome."""
    return {"audit": hub.store.audit(after, max, person, route)}


@router.get("/whoami")
def whoami(hub: HubDep, authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """Who the request's token names (null: none), and the hub's access mode (tokens, token, none)."""
    person = hub.gate.identify(authorization)
    return {
        "person": None
        if person is None
        else {"name": person.name, "role": person.role, "verified": person.verified},  # fmt: skip
        "mode": hub.gate.mode,
        "public_reads": hub.gate.open_reads,
    }
