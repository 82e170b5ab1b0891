"""docker-compose.yml cannot run here (no Docker engine): check it parses and speaks our CLI and env."""

from pathlib import Path

import yaml

from edge_app.cli import build_parser as edge_parser
from edgemnist.settings import ENV_VARS
from metro_app.cli import build_parser as hub_parser

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
PARSERS = {"edge-app": edge_parser, "metro-app": hub_parser}


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_compose_has_kafka_a_hub_three_edges_and_a_dashboard():
    s = services()
    assert s["kafka"]["image"].startswith("apache/kafka:")
    assert s["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    edges = [
        n
        for n, svc in s.items()
        if svc.get("image") == "edge-camera-classifier-app:v1" and "entrypoint" not in svc
    ]
    assert len(edges) == 3 and any(s[n]["environment"]["EDGE_MNIST_CAMERA"].startswith("Test") for n in edges)
    assert "hub" in s and "dashboard" in s


def test_every_command_parses_with_our_cli_and_every_env_var_exists():
    dockerfile_entrypoint = ["edge-app", "run"]
    for name, svc in services().items():
        env = svc.get("environment", {})
        for key in env:
            if key.startswith("EDGE_MNIST_"):
                assert key in ENV_VARS, f"{name}: {key} is not one of our env vars"
        if svc.get("image") != "edge-camera-classifier-app:v1":
            continue
        argv = [*svc.get("entrypoint", dockerfile_entrypoint), *svc.get("command", [])]
        args = PARSERS[argv[0]]().parse_args(argv[1:])  # exits (fails the test) on an unknown flag
        assert args.command == "run", name


def test_compose_runs_the_connect_worker_with_debezium_on_logical_postgres():
    s = services()
    connect, postgres = s["connect"], s["postgres"]
    assert connect["profiles"] == postgres["profiles"] == ["cdc"]  # `docker compose up` alone leaves them off
    assert connect["image"] == s["kafka"]["image"]  # Connect's runtime is the broker's own version
    assert connect["command"][0].endswith("connect-standalone.sh")
    assert any(v.endswith(":/opt/connect-plugins:ro") and "debezium" in v for v in connect["volumes"])
    assert "wal_level=logical" in postgres["command"]
    props = (COMPOSE.parent / "docker" / "connect-worker.properties").read_text()
    assert "plugin.path=/opt/connect-plugins" in props and "bootstrap.servers=kafka:9092" in props
