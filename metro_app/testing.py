"""What tests of the hub need: a real hub process (integration tests, the benchmark, the demo's
checks), and for unit tests a `HubLoop` over fakes, metrics windows and a models-topic producer.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgemnist.procs import free_port
from edgemnist.testing.fakes import Batch, FakeConsumer, FakeProducer
from edgemnist.wire.envelope import ModelEnvelope, targets_match
from edgemnist.wire.messages import (
    LABEL_SLOTS,
    CameraCounts,
    EdgeConfig,
    LatencyStats,
    MetricsMessage,
    ModelRefusal,
    utc_timestamp,
)
from metro_app.client import ApiError, ViewClient
from metro_app.ingest.loop import DeadLetterSink, HubLoop
from metro_app.samples import make_metrics
from metro_app.store import Store

__all__ = [
    "free_port",
    "wait_until",
    "HubProcess",
    "hub_loop",
    "ModelsProducer",
    "WINDOW_T0",
    "metrics_window",
    "scored_window",
]


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
        nice: int = 0,
    ) -> None:
        self.port = free_port()
        self.nice = nice  # added to the process's nice value before it starts (0: as this process)
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
            # in the child before exec, so every thread the hub starts inherits the nice value
            lower = functools.partial(os.nice, self.nice) if self.nice else None
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, preexec_fn=lower
            )
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


# unit tests: the hub's loop over fakes, and the metrics windows drift and rollout tests feed it


def hub_loop(
    store: Store, batches: Sequence[Batch], producer: FakeProducer | None = None
) -> tuple[HubLoop, FakeConsumer, FakeProducer]:
    """A `HubLoop` reading `batches` from a fake consumer, dead letters to `edge-mnist.dlq`."""
    consumer = FakeConsumer(batches)
    producer = producer or FakeProducer()
    loop = HubLoop(consumer, store, DeadLetterSink(producer, "edge-mnist.dlq"), retry_seconds=0)
    return loop, consumer, producer


class ModelsProducer(FakeProducer):
    """A fake producer for the models topic: reads back what it holds as an edge would."""

    @property
    def envelopes(self) -> list[ModelEnvelope]:
        """The models sent, in order (tombstones left out)."""
        return [ModelEnvelope.from_record(s.key, s.value) for s in self.sent if s.value is not None]

    @property
    def tombstones(self) -> list[bytes]:
        """The keys of the tombstones sent (shadow withdrawals)."""
        return [s.key or b"" for s in self.sent if s.value is None]

    def served(self, camera: str) -> str | None:
        """What an edge named `camera` would serve: the last serving record meant for it."""
        mine = [e.version for e in self.envelopes if e.role == "serve" and e.applies_to(camera)]
        return mine[-1] if mine else None

    def shadowed(self, camera: str) -> str | None:
        """What an edge named `camera` would score in shadow: its last shadow record, unless a serving
        record or a tombstone for it came later (`edge_app.models.ModelWatcher.feed`)."""
        found = None
        for s in self.sent:
            if s.value is None:
                audience = (s.key or b"").removeprefix(b"shadow:").decode()
                if targets_match(camera, audience.split(",")) or audience == "*":
                    found = None
                continue
            env = ModelEnvelope.from_record(s.key, s.value)
            if env.applies_to(camera):
                found = env.version if env.role == "shadow" else None
        return found


WINDOW_T0 = 1_780_000_000.0
"""The timestamp of `metrics_window(..., n=0, ...)`; window n is n seconds later."""


def metrics_window(
    camera: str, n: int, images: int, uncertain: int, correct: int | None = None, model: str = "m1"
) -> MetricsMessage:
    """The n-th one-second metrics window of a camera; labelled (`correct` right) when `correct` is given."""
    unc = [uncertain] + [0] * 10
    cert = [images - uncertain] + [0] * 10
    return MetricsMessage(
        camera_metrics={camera: CameraCounts(tuple(cert), tuple(unc))},
        timestamp=utc_timestamp(WINDOW_T0 + n),
        config=EdgeConfig(metrics_duration=1),
        prep=LatencyStats.of([0.001]),
        predict=LatencyStats.of([0.001]),
        id=f"{camera}/r1/m{n}",
        model_version=model,
        images=images,
        labelled=None if correct is None else images,
        correct=correct,
    )


def scored_window(
    camera: str,
    n: int,
    version: str,
    *,
    images: int = 200,
    uncertain: int = 6,
    correct: int = 194,
    refused: Sequence[tuple[str, str]] = (),
) -> MetricsMessage:
    """One metrics window of `camera` scored by `version`; every image labelled (`correct` right)."""
    certain = [0] * LABEL_SLOTS
    unc = [0] * LABEL_SLOTS
    certain[0], unc[0] = images - uncertain, uncertain
    m = make_metrics(camera, n, images=images, run=version, correct=correct)
    return dataclasses.replace(
        m,
        camera_metrics={camera: CameraCounts(tuple(certain), tuple(unc))},
        model_version=version,
        model_refused=tuple(ModelRefusal(v, why) for v, why in refused) or None,
    )
