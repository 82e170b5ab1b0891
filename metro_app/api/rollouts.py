"""Rollouts: POST /models/{version}/rollout registers one (shadow stage, then canary), GET /rollouts lists them.

GET /rollouts/{id}/disagreements lists the images where the rollout's model, scoring in the
shadow role on its canary cameras, disagreed with the serving model: label those first.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from edgemnist.errors import ConfigError, ModelError
from metro_app.access import Person
from metro_app.api.deps import MAX_SEQ, HubDep, by, note, require
from metro_app.rollout.policy import Policy
from metro_app.rollout.watcher import register_rollout
from metro_app.store.rollouts import RolloutBusy

__all__ = ["RolloutIn", "router"]

router = APIRouter()


class RolloutIn(BaseModel):
    """A canary rollout of a registered model; omitted bounds take the hub's settings."""

    canary: list[str] = Field(min_length=1, max_length=1000, description="canary camera names")
    windows: int | None = Field(default=None, ge=1, le=10_000)
    max_accuracy_drop: float | None = Field(default=None, ge=0, le=100)
    max_uncertain_rise: float | None = Field(default=None, ge=0, le=100)
    timeout: float | None = Field(default=None, gt=0)
    shadow: bool = Field(default=True, description="start with a shadow stage (false: canary at once)")
    shadow_labels: int | None = Field(default=None, ge=1, le=100_000)
    shadow_alpha: float | None = Field(default=None, gt=0, lt=1)


def _chosen(policy: Policy, body: RolloutIn) -> Policy:
    """The hub's policy with the bounds the request gives."""
    return Policy(
        body.windows or policy.windows,
        policy.max_accuracy_drop if body.max_accuracy_drop is None else body.max_accuracy_drop,
        policy.max_uncertain_rise if body.max_uncertain_rise is None else body.max_uncertain_rise,
        body.timeout or policy.timeout,
        policy.min_images,
        shadow=body.shadow and policy.shadow,
        shadow_labels=body.shadow_labels or policy.shadow_labels,
        shadow_alpha=body.shadow_alpha or policy.shadow_alpha,
    )


@router.post("/models/{version}/rollout", status_code=201)
def start_rollout(
    hub: HubDep,
    request: Request,
    version: str,
    body: RolloutIn,
    person: Annotated[Person, Depends(require("operator"))],
) -> JSONResponse:
    """Register a canary rollout (the hub's watcher starts it): 201, 404 unknown model, 409 one is running."""
    chosen = _chosen(hub.policy, body)
    note(request, version=version, canary=body.canary)
    if hub.store.model(version) is None:
        raise HTTPException(status_code=404, detail=f"no model version {version!r} in the registry")
    try:
        trigger = f"POST /models/{version}/rollout{by(person)}"
        r = register_rollout(hub.store, version, body.canary, chosen, trigger)
    except RolloutBusy as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    except (ConfigError, ModelError) as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return JSONResponse(status_code=201, content=r)


@router.get("/rollouts")
def list_rollouts(hub: HubDep, max: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Canary rollouts, newest first: state, canary cameras, baseline and canary figures, reason."""
    return {"rollouts": hub.book.list(max)}


@router.get("/rollouts/{rollout_id}")
def get_rollout(hub: HubDep, rollout_id: Annotated[int, Path(ge=1, le=MAX_SEQ)]) -> dict[str, Any]:
    found = hub.book.get(rollout_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no rollout {rollout_id}")
    return found


@router.get("/rollouts/{rollout_id}/disagreements")
def list_disagreements(
    hub: HubDep,
    rollout_id: Annotated[int, Path(ge=1, le=MAX_SEQ)],
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="only images with seq > after")] = 0,
    max: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Newest first, the disagreement images of the rollout's model on its canary cameras, with their
    latest label (null until labelled), and who was right on the labelled ones so far."""
    found = hub.book.get(rollout_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no rollout {rollout_id}")
    book = hub.store.disagreement_book()
    targets = found["targets"] or []
    items = book.listing(found["version"], targets, after, max)
    return {"items": items, "pairs": book.pairs(found["version"], targets)}
