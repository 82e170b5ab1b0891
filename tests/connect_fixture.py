"""One Kafka Connect worker with Debezium's PostgreSQL connector for the whole test session.

Started with the same code as ``edge-mnist cdc start`` (:class:`edgemnist_cdc.connect.ConnectWorker`),
its state under a temporary ``EDGE_MNIST_STATE_DIR``, so tests drive it with the real CLI
(``cdc start --name <test's own connector>``). The worker dies with pytest: stopped at session
end, at exit, and by PDEATHSIG if pytest itself is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgemnist.errors import EdgeMnistError
from edgemnist.testing.brokers import ApacheKafka, parent_death_hook
from edgemnist_cdc.connect import ConnectWorker, resolve_connect_jars

__all__ = ["ConnectSession", "connect_session"]


@dataclass(frozen=True)
class ConnectSession:
    """The running worker, and the env that points `edge-mnist cdc ...` at it and at the broker."""

    worker: ConnectWorker
    state_dir: Path
    bootstrap_servers: str
    startup_seconds: float

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "EDGE_MNIST_STATE_DIR": str(self.state_dir),
            "EDGE_MNIST_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            **extra,
        }


def connect_session(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectSession]:  # type: ignore[no-untyped-def]
    """Session fixture body (registered in conftest.py as `connect_worker`)."""
    import time

    if not isinstance(kafka, ApacheKafka) and "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        pytest.skip(f"Kafka Connect needs Apache Kafka; this session runs on {kafka.kind}")
    try:
        resolve_connect_jars()
    except EdgeMnistError as exc:
        pytest.fail(f"Kafka Connect / Debezium jars unavailable: {exc}")
    state_dir = tmp_path_factory.mktemp("connect-state")
    worker = ConnectWorker(state_dir / "connect")

    def _last_resort() -> None:
        with contextlib.suppress(Exception):
            worker.stop(grace=10.0)

    atexit.register(_last_resort)
    began = time.monotonic()
    session = ConnectSession(worker, state_dir, kafka.bootstrap_servers, 0.0)
    try:
        worker.start(kafka.settings(), preexec_fn=parent_death_hook(), timeout=240.0)
        yield ConnectSession(worker, state_dir, kafka.bootstrap_servers, time.monotonic() - began)
    finally:
        # the user's way first (`edge-mnist cdc stop`), then make sure whatever happened
        proc = subprocess.run([sys.executable, "-m", "edgemnist.cli", "cdc", "stop"], env=session.env(),
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        left_running = worker.alive()
        worker.stop(grace=20.0)
        if proc.returncode != 0 or left_running:
            raise RuntimeError(f"`edge-mnist cdc stop` did not stop the worker: {proc.stdout} {proc.stderr}")
