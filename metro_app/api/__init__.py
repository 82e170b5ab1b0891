"""The hub's HTTP API (FastAPI): `create_app` registers one router per resource."""

from metro_app.api.app import create_app

__all__ = ["create_app"]
