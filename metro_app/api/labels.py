"""Labels people give stored images: POST and GET /labels, conflicts, resolutions, GET /labellers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field, field_validator

from metro_app.api.deps import MAX_SEQ, HubDep, require_token
from metro_app.labels.quality import LABELS, conflicts, labeller_stats

__all__ = ["LabelIn", "ResolveIn", "router"]

router = APIRouter()


class LabelIn(BaseModel):
    """A person's label for one stored uncertain image."""

    image_id: str = Field(min_length=1, max_length=300)
    label: str = Field(description=f"one of {', '.join(LABELS)}")
    labeller: str = Field(min_length=1, max_length=300)

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
    resolver: str = Field(min_length=1, max_length=300)

    _known_label = field_validator("label", mode="before")(LabelIn._known_label.__func__)  # type: ignore[attr-defined]


@router.post("/labels", status_code=201, dependencies=[Depends(require_token)])
def add_label(hub: HubDep, body: LabelIn) -> dict[str, Any]:
    stored = hub.store.add_label(body.image_id, body.label, body.labeller)
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


@router.post("/labels/resolve", status_code=201, dependencies=[Depends(require_token)])
def resolve_label(hub: HubDep, body: ResolveIn) -> dict[str, Any]:
    """Settle an image's label whatever its labellers said (rule 2 of `trainset.settle_labels`)."""
    stored = hub.store.add_resolution(body.image_id, body.label, body.resolver)
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
