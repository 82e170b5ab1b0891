"""The Connect worker's configuration, the connector specs and the new CLI flags, without a JVM."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemnist.cli import build_parser
from edgemnist.errors import ConfigError
from edgemnist.kafka.settings import ENV_VARS, KafkaSettings
from edgemnist_cdc.connect import ConnectWorker, _client_security
from edgemnist_cdc.debezium import ConnectorSpec, debezium_config, specs_for
from edgemnist_cdc.labels import latest_labels
from metro_app.cli import build_parser as hub_parser
from metro_app.settings import HUB_ENV_VARS

URL = "postgresql://trainer:s3cr%40t@db.example:5433/digits"


def test_connector_config_uses_pgoutput_and_keeps_the_password_out(tmp_path: Path) -> None:
    spec = ConnectorSpec("edge-mnist", URL, ("mnist_train", "mnist_test"), "edge-mnist.cdc")
    config = debezium_config(spec, tmp_path / "pw.properties")
    assert config["plugin.name"] == "pgoutput"
    assert config["database.hostname"] == "db.example" and config["database.port"] == "5433"
    assert config["database.user"] == "trainer" and config["database.dbname"] == "digits"
    assert config["table.include.list"] == "public.mnist_train,public.mnist_test"
    assert config["slot.name"] == "edge_mnist" and config["publication.autocreate.mode"] == "filtered"
    assert config["database.password"] == f"${{file:{tmp_path / 'pw.properties'}:password}}"
    assert "s3cr" not in str(config)
    assert spec.topics() == {
        "mnist_train": "edge-mnist.cdc.public.mnist_train",
        "mnist_test": "edge-mnist.cdc.public.mnist_test",
    }


def test_password_file_is_private(tmp_path: Path) -> None:
    worker = ConnectWorker(tmp_path)
    sent: list[dict] = []
    worker.request = lambda method, path, body=None, timeout=30.0: sent.append(body)  # type: ignore[method-assign]
    worker.put_connector(ConnectorSpec("c1", URL, ("mnist_train",), "p"))
    secret = tmp_path / "secrets" / "c1.properties"
    assert secret.read_text() == "password=s3cr@t\n"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert "s3cr" not in str(sent)


def test_the_hub_store_labels_join_the_connector_or_get_their_own() -> None:
    [same] = specs_for(
        "n",
        URL,
        ["mnist_train", "mnist_test"],
        "p",
        store_url=URL.replace("postgresql", "postgresql+psycopg"),
    )
    assert same.tables == ("mnist_train", "mnist_test", "labels")
    main, store = specs_for("n", URL, ["mnist_train"], "p", store_url="postgresql://hub@hubdb/hub")
    assert main.tables == ("mnist_train",)
    assert (store.name, store.tables, store.topics()["labels"]) == (
        "n-store",
        ("labels",),
        "p-store.public.labels",
    )
    assert len(specs_for("n", URL, ["mnist_train"], "p", store_url="sqlite:///hub.db")) == 1


def test_bad_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="postgresql://"):
        debezium_config(ConnectorSpec("n", "mysql://x/y", ("t",), "p"), tmp_path / "pw")


def test_worker_reaches_kafka_with_sasl_like_the_python_clients() -> None:
    settings = KafkaSettings(
        bootstrap_servers=("b:9093",), security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
        sasl_username="token", sasl_password='p"w',
    )  # fmt: skip
    props = _client_security(settings)
    assert props["security.protocol"] == "SASL_SSL" and props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="token" password="p\\"w";'
    )


def test_cli_flags_parse_and_env_vars_are_registered() -> None:
    parser = build_parser()
    args = parser.parse_args(["cdc", "start", "--url", URL, "--name", "x", "--tables", "a,b"])
    assert (args.cdc_command, args.name, args.tables) == ("start", "x", "a,b")
    args = parser.parse_args(["train", "--from-topic", "t", "--until-idle", "3"])
    assert (args.from_topic, args.until_idle) == ("t", 3.0)
    args = parser.parse_args(["evaluate", "--from-topic", "t", "--follow", "--max-rows", "10"])
    assert args.follow and args.max_rows == 10
    args = parser.parse_args(["db", "load", "--url", URL, "--data", "bundled", "--test-later"])
    assert args.test_later
    args = hub_parser().parse_args(["retrain", "--labels-from-topic", "p.public.labels"])
    assert args.labels_from_topic == "p.public.labels"
    for name in ("EDGE_MNIST_DB_URL", "EDGE_MNIST_CONNECT_URL", "EDGE_MNIST_CONNECT_HOME"):
        assert name in ENV_VARS
    assert "EDGE_MNIST_LABELS_TOPIC" in HUB_ENV_VARS  # a hub command's name: the hub registers it


def test_labels_from_the_stream_are_settled_like_the_store_settles_them() -> None:
    rows = [
        {"id": 3, "image_id": "a", "label": "7", "labeller": "ana"},  # ana corrects herself: 7
        {"id": 1, "image_id": "a", "label": "1", "labeller": "ana"},
        {"id": 2, "image_id": "b", "label": "Other", "labeller": "ana"},
        {"id": 4, "image_id": "c", "label": "3", "labeller": "ana"},  # two people disagree: a conflict
        {"id": 5, "image_id": "c", "label": "5", "labeller": "bo"},
    ]
    assert latest_labels(rows) == [("b", "Other"), ("a", "7"), ("c", "conflict")]
