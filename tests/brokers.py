"""The test session's broker: KAFKA_BOOTSTRAP_SERVERS, else Apache Kafka, else (loudly) Tansu."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from edgemnist.kafka import wait_for_broker
from edgemnist.kafka.settings import KafkaSettings
from edgemnist.testing.brokers import (
    ApacheKafka,
    ExternalKafka,
    KafkaNotAvailable,
    KafkaStartFailed,
    NotRestartable,
)
from edgemnist_demo.broker import LocalBroker


class TansuKafka(NotRestartable):
    """The fallback: the memory-only Tansu broker. Not durable, so no restart tests."""

    kind = "Tansu (memory only) - FALLBACK, Apache Kafka could not start"
    durable = False
    can_restart = False

    def __init__(self, reason: str) -> None:
        why = reason.splitlines()[0] if reason else "unknown"
        self.restart_skip_reason = (
            f"needs a durable broker that the test can restart; on Tansu because: {why}"
        )
        self._broker = LocalBroker()
        self.startup_seconds: float | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self._broker.bootstrap_servers

    @property
    def log_path(self) -> Path | None:
        return self._broker.log_path

    def settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=(self.bootstrap_servers,))

    def start(self) -> TansuKafka:
        began = time.monotonic()
        self._broker.start()
        wait_for_broker(self.settings(), 30)
        self.startup_seconds = time.monotonic() - began
        return self

    def close(self) -> None:
        self._broker.stop()


def start_kafka(say=print) -> ApacheKafka | ExternalKafka | TansuKafka:  # type: ignore[no-untyped-def]
    """The broker for this test session, started; ``say`` reports loud news."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return ExternalKafka(external).start()
    reason = ""
    for _attempt in range(2):
        kafka = ApacheKafka()
        try:
            return kafka.start()
        except KafkaStartFailed as exc:
            kafka.close()
            reason = str(exc)
        except KafkaNotAvailable as exc:  # nothing to install by retrying
            kafka.close()
            reason = str(exc)
            break
    if os.environ.get("EDGE_MNIST_REQUIRE_APACHE_KAFKA"):
        raise KafkaNotAvailable(reason)
    say("!" * 100)
    say(f"!!! Apache Kafka could not start; the integration tests use Tansu instead.\n!!! {reason}")
    say("!" * 100)
    return TansuKafka(reason).start()


if __name__ == "__main__":  # python -m tests.brokers: start, report, stop
    broker = start_kafka()
    print(
        f"{broker.kind} on {broker.bootstrap_servers}, ready in {broker.startup_seconds:.1f} s",
        file=sys.stderr,
    )
    broker.close()
