"""The model registry and retrain jobs: GET /models, a model's card and file, POST /models/retrain."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from metro_app.access import Person
from metro_app.api.deps import Hub, HubDep, by, note, require
from metro_app.store.rollouts import with_rollouts
from metro_app.training.jobs import RetrainJobs

__all__ = ["router", "STARTED_BY"]

#: The model event naming who started the retrain that made a model (a person of the tokens file).
STARTED_BY = "started_by"

router = APIRouter()


def _note_starter(hub: Hub, name: str) -> Callable[[dict[str, Any]], None]:
    """Once the job has made a model, record on it who started the retrain (the Models panel shows it)."""

    def note(job: dict[str, Any]) -> None:
        version = (job.get("result") or {}).get("version")
        if version and hub.store.model(version) is not None:
            hub.store.note_model_event(version, STARTED_BY, f"retrain {job['id']} started by {name}")

    return note


def _jobs_or_503(hub: Hub) -> RetrainJobs:
    if hub.retrain is None:
        raise HTTPException(status_code=503, detail="retraining is not enabled on this hub")
    return hub.retrain


@router.get("/models")
def list_models(hub: HubDep) -> dict[str, Any]:
    """Every model in the registry, newest first, with its figures, status events and newest rollout."""
    return {"models": with_rollouts(hub.store.models(), hub.book.latest_by_version())}


# The retrain routes come before /models/{version}/...: the first matching route
# answers, so /models/retrain/file is a retrain job, not a model's file.
@router.post("/models/retrain", status_code=202)
def start_retrain(
    hub: HubDep, request: Request, person: Annotated[Person, Depends(require("operator"))]
) -> JSONResponse:
    """Start a retrain in the background: 202 with the job, or 409 naming the job already running."""
    on_finish = _note_starter(hub, person.name) if person.verified else None
    job, started = _jobs_or_503(hub).start("POST /models/retrain" + by(person), on_finish=on_finish)
    note(request, job=job["id"], started=started)
    if not started:
        return JSONResponse(
            status_code=409, content={"detail": f"retrain job {job['id']} is running", "job": job}
        )
    return JSONResponse(status_code=202, content={"job": job["id"], **job})


@router.get("/models/retrain/{job_id}")
def retrain_job(hub: HubDep, job_id: str) -> dict[str, Any]:
    job = _jobs_or_503(hub).get(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"no retrain job {job_id!r}")
    return job


@router.get("/models/{version}")
def model_card(hub: HubDep, version: str) -> dict[str, Any]:
    card = hub.store.model(version)
    if card is None:
        raise HTTPException(status_code=404, detail=f"no model version {version!r} in the registry")
    return card


@router.get("/models/{version}/file", responses={200: {"content": {"application/octet-stream": {}}}})
def model_file(hub: HubDep, version: str) -> Response:
    data = hub.store.model_file(version)
    if data is None:
        raise HTTPException(status_code=404, detail=f"no model version {version!r} in the registry")
    headers = {"Content-Disposition": f'attachment; filename="{version}.skops"'}
    card = _signature_card(hub, version, data)
    if card is not None:
        headers["X-Model-Signature"] = json.dumps(card, separators=(",", ":"))
    return Response(content=data, media_type="application/octet-stream", headers=headers)


@router.get("/models/{version}/signature")
def model_signature(hub: HubDep, version: str) -> dict[str, Any]:
    """The model file's signature card (save it as ``<version>.sig.json`` for `metro-app keys verify`)."""
    data = hub.store.model_file(version)
    if data is None:
        raise HTTPException(status_code=404, detail=f"no model version {version!r} in the registry")
    card = _signature_card(hub, version, data)
    if card is None:
        raise HTTPException(
            status_code=404, detail="this hub has no signing key (metro-app run --signing-key)"
        )
    return card


def _signature_card(hub: Hub, version: str, data: bytes) -> dict[str, Any] | None:
    """Version, parent, targets (every camera) and the hub's signature over them and the bytes."""
    if hub.signing_key is None:
        return None
    model = hub.store.model(version) or {}
    parent = model.get("parent")
    sig = hub.signing_key.sign_model(data, version=version, targets=None, parent=parent)
    return {"version": version, "parent": parent, "targets": None, "role": None, "signature": sig.to_json()}
