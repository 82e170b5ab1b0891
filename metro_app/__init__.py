"""The hub (metro-edge) application."""

__all__: list[str] = []
