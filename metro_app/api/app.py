"""The hub's HTTP API (FastAPI): views with long-poll, cameras, images, labels, models, health.

Shapes are a contract that dashboards and `metro_app.client` rely on; the
OpenAPI spec is served at /openapi.json.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from metro_app.api.guard import MAX_BODY_BYTES, BodyGuard
from metro_app.labels.quality import LABELS, conflicts, labeller_stats
from metro_app.rollout.policy import Policy
from metro_app.store import Store
from metro_app.store.rollouts import RolloutBook, with_rollouts
from metro_app.store.rows import png_bytes
from metro_app.training.jobs import RetrainJobs
from metro_app.views.catalog import View, Views

__all__ = ["LABELS", "MAX_SEQ", "LabelIn", "ResolveIn", "create_app"]

_POLL_SECONDS = 0.1
MAX_SEQ = 2**63 - 1  # sequence numbers are 64-bit row ids; a larger ?after= is a 422, not a 500


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


class RolloutIn(BaseModel):
    """A canary rollout of a registered model; omitted bounds take the hub's settings."""

    canary: list[str] = Field(min_length=1, max_length=1000, description="canary camera names")
    windows: int | None = Field(default=None, ge=1, le=10_000)
    max_accuracy_drop: float | None = Field(default=None, ge=0, le=100)
    max_uncertain_rise: float | None = Field(default=None, ge=0, le=100)
    timeout: float | None = Field(default=None, gt=0)


class ResolveIn(BaseModel):
    """A reviewer's final label for an image its labellers disagree on."""

    image_id: str = Field(min_length=1, max_length=300)
    label: str = Field(description=f"one of {', '.join(LABELS)}")
    resolver: str = Field(min_length=1, max_length=300)

    _known_label = field_validator("label", mode="before")(LabelIn._known_label.__func__)  # type: ignore[attr-defined]


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


async def _on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"message": _validation_message(exc), "detail": detail})


def _auth(token: str | None) -> Callable[[str | None], None]:
    expected = (token or "").encode()

    def check(authorization: Annotated[str | None, Header()] = None) -> None:
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

    return check


async def _long_poll(view: View, after: int, limit: int, wait: float) -> list[tuple[int, Any]]:
    deadline = time.monotonic() + wait
    while True:
        items = await run_in_threadpool(view.page, after, limit)
        if items or time.monotonic() >= deadline:
            return items
        while time.monotonic() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
            if await run_in_threadpool(view.last_seq) > after:
                break


def create_app(
    store: Store,
    *,
    token: str | None,
    health: Callable[[], dict[str, Any]] | None = None,
    retrain: RetrainJobs | None = None,
    max_body: int = MAX_BODY_BYTES,
    rollout_policy: Policy | None = None,
) -> FastAPI:
    """The API over one store; `health` adds the consumer's figures to GET /health, `retrain` runs retrains.

    Writes need the bearer token, checked before their body is read; bodies over `max_body`
    bytes are refused (413).
    """
    views = Views(store)
    started = time.time()
    app = FastAPI(title="edge-mnist hub", version="1", description=__doc__)
    app.add_middleware(BodyGuard, token=token, max_body=max_body)
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    require_token = _auth(token)

    def view_or_404(name: str) -> View:
        view = views.get(name)
        if view is None:
            known = ", ".join(v.name for v in views)
            raise HTTPException(status_code=404, detail=f"no view named {name!r}; views: {known}")
        return view

    @app.get("/views")
    def list_views() -> dict[str, Any]:
        return {"views": [{"name": v.name, "last_seq": v.last_seq(), "size": v.size()} for v in views]}

    @app.get("/views/{name}")
    async def read_view(
        name: str,
        after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="return tuples with seq > after")] = 0,
        max: Annotated[int, Query(ge=1, le=1000, description="at most this many tuples")] = 100,
        wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for a newer tuple")] = 0,
    ) -> dict[str, Any]:
        view = view_or_404(name)
        items = await _long_poll(view, after, max, wait)
        last = await run_in_threadpool(view.last_seq)
        return {"name": view.name, "items": [{"seq": s, "tuple": t} for s, t in items], "last_seq": last}

    @app.get("/cameras")
    def cameras() -> dict[str, Any]:
        return {"cameras": [t for _, t in views.camera_health.snapshot()]}

    @app.get("/images/{image_id:path}", responses={200: {"content": {"image/png": {}}}})
    def image(image_id: str) -> Response:
        row = store.image(image_id) or store.training_image(image_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"no uncertain image with id {image_id!r}")
        return Response(content=png_bytes(row), media_type="image/png")

    @app.post("/labels", status_code=201, dependencies=[Depends(require_token)])
    def add_label(body: LabelIn) -> dict[str, Any]:
        stored = store.add_label(body.image_id, body.label, body.labeller)
        if stored is None:
            raise HTTPException(status_code=404, detail=f"no uncertain image with id {body.image_id!r}")
        return stored

    @app.get("/labels")
    def list_labels(
        after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        max: Annotated[int, Query(ge=1, le=10000)] = 1000,
        image_id: str | None = None,
    ) -> dict[str, Any]:
        return {"labels": store.labels(after, max, image_id)}

    @app.post("/labels/resolve", status_code=201, dependencies=[Depends(require_token)])
    def resolve_label(body: ResolveIn) -> dict[str, Any]:
        """Settle an image's label whatever its labellers said (rule 2 of `trainset.settle_labels`)."""
        stored = store.add_resolution(body.image_id, body.label, body.resolver)
        if stored is None:
            raise HTTPException(status_code=404, detail=f"no image with id {body.image_id!r}")
        return stored

    @app.get("/labels/conflicts")
    def label_conflicts() -> dict[str, Any]:
        """Images whose labellers disagree (excluded from retrain until settled), newest first."""
        return {"conflicts": conflicts(store.settled_labels())}

    @app.get("/labellers")
    def labellers() -> dict[str, Any]:
        """Each labeller's label count and agreement rate with the settled labels."""
        settled = store.settled_labels()
        return {
            "labellers": labeller_stats(store.label_votes(), settled),
            "images": len(settled),
            "conflicts": sum(1 for s in settled.values() if s.conflict),
        }

    @app.get("/alerts")
    def list_alerts(
        status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
        max: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> dict[str, Any]:
        """Camera alerts (drift, departs from fleet, Camera Error labels), newest first."""
        return {"alerts": store.alerts(status, max)}

    book = RolloutBook(store)
    policy = rollout_policy or Policy()

    @app.get("/models")
    def list_models() -> dict[str, Any]:
        """Every model in the registry, newest first, with its figures, status events and newest rollout."""
        return {"models": with_rollouts(store.models(), book.latest_by_version())}

    @app.post("/models/{version}/rollout", status_code=201, dependencies=[Depends(require_token)])
    def start_rollout(version: str, body: RolloutIn) -> JSONResponse:
        """Register a canary rollout (the hub's watcher starts it): 201, 404 unknown model, 409 one is running."""
        from edgemnist.errors import ConfigError, ModelError
        from metro_app.rollout.watcher import register_rollout
        from metro_app.store.rollouts import RolloutBusy

        chosen = Policy(
            body.windows or policy.windows,
            policy.max_accuracy_drop if body.max_accuracy_drop is None else body.max_accuracy_drop,
            policy.max_uncertain_rise if body.max_uncertain_rise is None else body.max_uncertain_rise,
            body.timeout or policy.timeout,
            policy.min_images,
        )
        if store.model(version) is None:
            raise HTTPException(status_code=404, detail=f"no model version {version!r} in the registry")
        try:
            r = register_rollout(store, version, body.canary, chosen, f"POST /models/{version}/rollout")
        except RolloutBusy as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        except (ConfigError, ModelError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return JSONResponse(status_code=201, content=r)

    @app.get("/rollouts")
    def list_rollouts(max: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """Canary rollouts, newest first: state, canary cameras, baseline and canary figures, reason."""
        return {"rollouts": book.list(max)}

    @app.get("/rollouts/{rollout_id}")
    def get_rollout(rollout_id: Annotated[int, Path(ge=1, le=MAX_SEQ)]) -> dict[str, Any]:
        found = book.get(rollout_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no rollout {rollout_id}")
        return found

    def jobs_or_503() -> RetrainJobs:
        if retrain is None:
            raise HTTPException(status_code=503, detail="retraining is not enabled on this hub")
        return retrain

    @app.post("/models/retrain", status_code=202, dependencies=[Depends(require_token)])
    def start_retrain() -> JSONResponse:
        """Start a retrain in the background: 202 with the job, or 409 naming the job already running."""
        job, started = jobs_or_503().start("POST /models/retrain")
        if not started:
            return JSONResponse(
                status_code=409, content={"detail": f"retrain job {job['id']} is running", "job": job}
            )
        return JSONResponse(status_code=202, content={"job": job["id"], **job})

    @app.get("/models/retrain/{job_id}")
    def retrain_job(job_id: str) -> dict[str, Any]:
        job = jobs_or_503().get(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no retrain job {job_id!r}")
        return job

    @app.get("/models/{version}")
    def model_card(version: str) -> dict[str, Any]:
        card = store.model(version)
        if card is None:
            raise HTTPException(status_code=404, detail=f"no model version {version!r} in the registry")
        return card

    @app.get("/models/{version}/file", responses={200: {"content": {"application/octet-stream": {}}}})
    def model_file(version: str) -> Response:
        data = store.model_file(version)
        if data is None:
            raise HTTPException(status_code=404, detail=f"no model version {version!r} in the registry")
        return Response(
            content=data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{version}.skops"'},
        )

    @app.get("/health")
    def get_health() -> dict[str, Any]:
        counts = store.counts()
        consumer = health() if health is not None else {}
        return {
            "status": "degraded" if consumer.get("store_failing") else "ok",
            "uptime": time.time() - started,
            "consumer_lag": consumer.get("lag"),
            "stored": {k: counts[k] for k in ("metrics", "images", "labels", "models")},
            "dlq": counts["dead_letters"],
            "consumer": consumer,
        }

    return app
