"""A registry of hub jobs started in the background: submit (cancelling an older job of the same name), list, cancel.

One JSON file per job name under `<state dir>/jobs/` (mode 0600, in a 0700
directory), holding pid, start time, port and command. Secrets (a store URL with
a password) go to the child by environment, never argv, and every command kept
or shown has passwords masked. A pid is only signalled while its command line
is still a metro-app hub, so a recycled pid is never killed.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgemnist.errors import ConfigError
from edgemnist.files import write_atomic
from edgemnist.masking import mask_secrets
from metro_app.settings import state_dir

__all__ = ["Job", "JobRegistry"]

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class Job(dict):  # type: ignore[type-arg]
    """name, pid, started, host, port, command, log."""

    def alive(self) -> bool:
        try:
            cmdline = Path(f"/proc/{self['pid']}/cmdline").read_bytes()
        except OSError:
            return False
        return b"metro_app" in cmdline or b"metro-app" in cmdline

    def health(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The job's GET /health; over HTTPS when it serves with --tls-cert (a liveness check of our
        own child, so its certificate is not verified: the host may be a name its SAN lacks)."""
        tls = "--tls-cert" in (self.get("command") or [])
        url = f"{'https' if tls else 'http'}://{self['host']}:{self['port']}/health"
        context = ssl._create_unverified_context() if tls else None  # noqa: S323
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
                return json.load(r)
        except (OSError, ValueError):
            return None


class JobRegistry:
    """Jobs by name, as files under `root` (default `<state dir>/jobs`)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or state_dir() / "jobs"

    def _path(self, name: str) -> Path:
        if not name or not set(name) <= _NAME_OK:
            raise ConfigError(f"job name {name!r}: use letters, digits, '-', '_' and '.'")
        return self.root / f"{name}.json"

    def get(self, name: str) -> Job | None:
        try:
            return Job(json.loads(self._path(name).read_text()))
        except (OSError, ValueError):
            return None

    def list(self) -> list[Job]:
        return [j for p in sorted(self.root.glob("*.json")) if (j := self.get(p.stem)) is not None]

    def submit(
        self,
        name: str,
        run_args: Sequence[str],
        host: str,
        port: int,
        wait: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> Job:
        """Cancel a running job of that name, start `metro-app run ARGS` detached, wait for /health.

        `env` adds variables to the child's environment: the way to hand it secrets.
        """
        self.cancel(name)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_path = self.root / f"{name}.log"
        command = [sys.executable, "-m", "metro_app.cli", "run", *run_args]
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "ab") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        job = Job(
            name=name,
            pid=proc.pid,
            started=time.time(),
            host=host,
            port=port,
            command=[mask_secrets(arg) for arg in command],
            log=str(log_path),
        )
        write_atomic(self._path(name), json.dumps(job, indent=1).encode(), mode=0o600)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and proc.poll() is None and job.health() is None:
            time.sleep(0.3)
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-1500:]
            raise ConfigError(f"job {name!r} exited with status {proc.returncode}; log {log_path}:\n{tail}")
        return job

    def cancel(self, name: str, timeout: float = 20.0) -> bool:
        """Stop a job cleanly (SIGTERM, then SIGKILL after `timeout`); False when none was running."""
        job = self.get(name)
        if job is None:
            return False
        was_alive = job.alive()
        if was_alive:
            _terminate(job, timeout)
        self._path(name).unlink(missing_ok=True)
        return was_alive


def _terminate(job: Job, timeout: float) -> None:
    os.kill(job["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.alive():
        _reap(job["pid"])
        time.sleep(0.1)
    if job.alive():
        os.kill(job["pid"], signal.SIGKILL)
        _reap(job["pid"])


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
