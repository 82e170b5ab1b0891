"""Labels people give stored images: POST and GET /labels, conflicts, resolutions, GET /labellers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, field_validator

from metro_app.access import Person
from metro_app.api.deps import MAX_SEQ, HubDep, note, require
from metro_app.labels.quality import LABELS, conflicts, labeller_stats

__all__ = ["LabelIn", "ResolveIn", "router"]

router = APIRouter()


class LabelIn(BaseModel):
    """A person's label for one stored uncertain image."""

    image_id: str = Field(min_length=1, max_length=300)
    label: str = Field(description=f"one of {', '.join(LABELS)}")
    labeller: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description="who labelled: needed with the single shared token; with a tokens file the token's "
        "person, and a different name is refused",
    )

    @field_validator("label", mode="before")
    @classmethod
    def _known_label(cls, v: Any) -> str:
        text = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if text not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}")
        return text


class ResolveIn(BaseModel):
    """A reviewer's final label for an image its labellers disagree on."""

    image_id: str = Field(min_length=1, max_length=300)
    label: str = Field(description=f"one of {', '.join(LABELS)}")
    resolver: str | None = Field(
        default=None, min_length=1, max_length=300, description="who decided; as `LabelIn.labeller`"
    )

    _known_label = field_validator("label", mode="before")(LabelIn._known_label.__func__)  # type: ignore[attr-defined]


def _who(person: Person, named: str | None, field: str) -> str:
    """The name a write is recorded under: the token's person, or (shared token) the body's name."""
    if person.verified:
        if named is not None and named != person.name:
            raise HTTPException(
                status_code=403,
                detail=f"{field} {named!r} is not the token's person {person.name!r}: "
                f"send your own token (or leave {field} out)",
            )
        return person.name
    if named is None:
        raise HTTPException(status_code=422, detail=f"{field}: needed with the shared API token")
    return named


@router.post("/labels", status_code=201)
def add_label(
    hub: HubDep, request: Request, body: LabelIn, person: Annotated[Person, Depends(require("labeller"))]
) -> dict[str, Any]:
    labeller = _who(person, body.labeller, "labeller")
    note(request, image_id=body.image_id, label=body.label, labeller=labeller)
    stored = hub.store.add_label(body.image_id, body.label, labeller, verified=person.verified)
    if stored is None:
        raise HTTPException(status_code=404, detail=f"no uncertain image with id {body.image_id!r}")
    return stored


@router.get("/labels")
def list_labels(
    hub: HubDep,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    max: Annotated[int, Query(ge=1, le=10000)] = 1000,
    image_id: str | None = None,
) -> dict[str, Any]:
    return {"labels": hub.store.labels(after, max, image_id)}


@router.post("/labels/resolve", status_code=201)
def resolve_label(
    hub: HubDep, request: Request, body: ResolveIn, person: Annotated[Person, Depends(require("operator"))]
) -> dict[str, Any]:
    """Settle an image's label whatever its labellers said (rule 2 of `trainset.settle_labels`)."""
    resolver = _who(person, body.resolver, "resolver")
    note(request, image_id=body.image_id, label=body.label, resolver=resolver)
    stored = hub.store.add_resolution(body.image_id, body.label, resolver)
    if stored is None:
        raise HTTPException(status_code=404, detail=f"no image with id {body.image_id!r}")
    return stored


@router.get("/labels/conflicts")
def label_conflicts(hub: HubDep) -> dict[str, Any]:
    """Images whose labellers disagree (excluded from retrain until settled), newest first."""
    return {"conflicts": conflicts(hub.store.settled_labels())}


@router.get("/labellers")
def labellers(hub: HubDep) -> dict[str, Any]:
    """Each labeller's label count and agreement rate with the settled labels."""
    settled = hub.store.settled_labels()
    return {
        "labellers": labeller_stats(hub.store.label_votes(), settled),
        "images": len(settled),
        "conflicts": sum(1 for s in settled.values() if s.conflict),
    }
