"""The dashboard shows who its token signs in as, and the Correction Station labels under that person (issue 21)."""

from __future__ import annotations

import threading

import pytest
import uvicorn

from metro_app.access import AccessGate, TokenFile, add_person
from metro_app.api.app import create_app
from metro_app.dashboard.app import MetroDashboard
from metro_app.samples import make_image
from metro_app.store import Store
from metro_app.testing import free_port, wait_until


@pytest.fixture
def hub(tmp_path):
    """A hub API with a tokens file (reads need a token); yields (base URL, store, labeller's token)."""
    tokens = tmp_path / "tokens.json"
    token = add_person(tokens, "ana", "labeller")
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.write_batch([], [make_image("CamA", k) for k in range(3)])
    port = free_port()
    app = create_app(store, gate=AccessGate(tokens=TokenFile(tokens)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the API server to start", every=0.05)
    yield f"http://127.0.0.1:{port}", store, token
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


def test_a_signed_in_person_labels_under_their_own_name(hub):
    base, store, token = hub
    dash = MetroDashboard(base, token, labeller="typed-name")
    who = dash.sign_in()
    assert who["person"]["name"] == "ana" and "signed in as <b>ana</b> (labeller)" in dash.whoami.value
    assert dash.station.labeller.value == "ana" and dash.station.labeller.disabled
    dash.station.load()
    dash.station.choose("7")
    dash.station.upload(wait=True)
    assert [(x["labeller"], x["verified"]) for x in store.labels()] == [("ana", True)]


def test_without_a_token_the_dashboard_says_the_hub_needs_one(hub, monkeypatch):
    base, _, _ = hub
    monkeypatch.delenv("EDGE_MNIST_API_TOKEN", raising=False)
    dash = MetroDashboard(base)
    assert dash.sign_in() is None and "needs a token to read" in dash.whoami.value
    assert not dash.station.labeller.disabled
