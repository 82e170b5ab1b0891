"""Fixtures of the hub's unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from metro_app.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An empty hub store in a SQLite file of this test's own; tests that need rows build on it."""
    s = Store(f"sqlite:///{tmp_path}/hub.db")
    yield s
    s.close()
