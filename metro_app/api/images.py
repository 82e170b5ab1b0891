"""GET /images/{image_id}: a stored uncertain or training image as PNG."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from metro_app.api.deps import HubDep
from metro_app.store.rows import png_bytes

__all__ = ["router"]

router = APIRouter()


@router.get("/images/{image_id:path}", responses={200: {"content": {"image/png": {}}}})
def image(hub: HubDep, image_id: str) -> Response:
    row = hub.store.image(image_id) or hub.store.training_image(image_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no uncertain image with id {image_id!r}")
    return Response(content=png_bytes(row), media_type="image/png")
