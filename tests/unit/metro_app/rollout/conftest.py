"""The rollout tests' shared fixtures: a registry with a published and a candidate model, the models topic."""

from __future__ import annotations

import hashlib

import pytest

from metro_app.testing import ModelsProducer, scored_window


@pytest.fixture
def fleet_store(store):
    """m-1 published and m-2 a candidate; three cameras on m-1, 97 % right, 3 % uncertain."""
    for version, parent, status in (("m-1", None, "published"), ("m-2", "m-1", "candidate")):
        data = f"PK-{version}".encode()
        store.add_model(
            version, hashlib.sha256(data).hexdigest(), data, parent=parent, status=status, reason="x"
        )
    store.write_batch(
        [scored_window(c, n, "m-1") for n in range(4) for c in ("CamA-h", "CamB-h", "CamC-h")], []
    )
    return store


@pytest.fixture
def producer():
    return ModelsProducer()
