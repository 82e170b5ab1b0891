"""Running a real hub process, for integration tests, the benchmark and the demo's checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgemnist.procs import free_port
from metro_app.client import ApiError, ViewClient

__all__ = ["free_port", "wait_until", "HubProcess"]


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r:.300})")


class HubProcess:
    """`metro-app run` as a child process on a free loopback port, with its log in a file."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        store_url: str,
        log_path: Path,
        *,
        token: str = "test-token",
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.token = token
        self.log_path = log_path
        self.cmd = [
            sys.executable,
            "-m",
            "metro_app.cli",
            "run",
            "--bootstrap-servers",
            bootstrap_servers,
            "--topic",
            topic,
            "--store",
            store_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-train-model",  # tests name their model; a hub under test never trains one into the checkout
            # its own side topics, so hubs and edges of other tests in the session never see them;
            # prediction requests off unless a test asks (flags in `extra` come later and win)
            "--models-topic",
            f"{topic}.models",
            "--control-topic",
            f"{topic}.control",
            "--alerts-topic",
            f"{topic}.alerts",
            "--predict-requests",
            "",
            *extra,
        ]
        self.env = {**os.environ, "EDGE_MNIST_API_TOKEN": token, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = ViewClient(f"http://127.0.0.1:{self.port}", token=token)

    def start(self, timeout: float = 90) -> HubProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        wait_until(self._healthy, timeout, f"the hub's /health (log {self.log_path})")
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"hub exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            return self.client.health()["status"] == "ok"
        except ApiError:
            return False

    def health(self) -> dict[str, Any]:
        return self.client.health()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no chance to commit, flush or close anything."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
