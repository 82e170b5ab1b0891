"""How the API answers a request that fails validation: 422 with one readable message."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

__all__ = ["on_invalid_request"]


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


async def on_invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with `message` (every error as `where: what`) and `detail` (FastAPI's list, trimmed)."""
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"message": _validation_message(exc), "detail": detail})
