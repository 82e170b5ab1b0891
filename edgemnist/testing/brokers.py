"""Real Apache Kafka for the integration tests: KRaft, one node, data on disk, loopback only.

The broker jars come from Maven Central through ``kafka/pom.xml`` (``make kafka-jars``)
and are cached in ``EDGE_MNIST_KAFKA_LIBS`` (default ``~/.cache/edge-mnist/kafka-4.1.1/libs``).
Tests pick the broker in `tests/brokers.py`: `KAFKA_BOOTSTRAP_SERVERS`, else this Apache Kafka,
else (loudly, without restart support) the demo's Tansu broker.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path

from edgemnist.kafka import wait_for_broker
from edgemnist.kafka.settings import KafkaSettings, resolve
from edgemnist.procs import free_port, terminate, wait_for_port

__all__ = [
    "ApacheKafka",
    "ExternalKafka",
    "KafkaNotAvailable",
    "KafkaStartFailed",
    "NotRestartable",
    "kafka_libs_dir",
    "parent_death_hook",
    "random_cluster_id",
]

KAFKA_VERSION = "4.1.1"
REPO = Path(__file__).resolve().parents[2]
POM = REPO / "kafka" / "pom.xml"
JAVA_HINT = "Java 17+ is needed to run Apache Kafka: apt-get install openjdk-17-jre-headless"
MVN_HINT = (
    "Maven (mvn) is needed to fetch Apache Kafka's jars: apt-get install maven (or run `make kafka-jars`)"
)

_LIVE: weakref.WeakSet[ApacheKafka] = weakref.WeakSet()


class KafkaNotAvailable(RuntimeError):
    """Apache Kafka cannot run here; the message says what to install or where the log is."""


class KafkaStartFailed(KafkaNotAvailable):
    """The JVM ran but the broker did not become ready (a port race, say); worth one retry."""


def kafka_libs_dir() -> Path:
    env = os.environ.get("EDGE_MNIST_KAFKA_LIBS")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "edge-mnist" / f"kafka-{KAFKA_VERSION}" / "libs"


def _check_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise KafkaNotAvailable(JAVA_HINT)
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < 17:
        raise KafkaNotAvailable(f"{JAVA_HINT} (found: {out.splitlines()[:1]})")
    return java


def resolve_jars(libs: Path) -> list[Path]:
    """The broker jars in ``libs``; fetched with Maven first when there are none."""
    libs.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".resolve.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest runs must not fetch into one dir at once
        jars = sorted(libs.glob("*.jar"))
        if jars:
            return jars
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaNotAvailable(f"no jars in {libs}; {MVN_HINT}")
        cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={libs}", f"-Dkafka.version={KAFKA_VERSION}"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise KafkaNotAvailable(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        (libs / ".resolved").touch()
        return sorted(libs.glob("*.jar"))


def _die_with_parent() -> None:
    """Child side of Popen: SIGTERM the broker if pytest itself dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def parent_death_hook():  # type: ignore[no-untyped-def]
    # PDEATHSIG fires when the forking *thread* ends, so only arm it from the main thread.
    return _die_with_parent if threading.current_thread() is threading.main_thread() else None


def random_cluster_id() -> str:
    """Kafka's form (22 url-safe base64 characters), never starting with "-": kafka-storage's
    argument parser would read such an id as an option (one start in 64 failed that way)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


LOG4J2 = """\
status = error
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


class ApacheKafka:
    """One Apache Kafka 4.x node (broker + controller) whose data survives stop/start."""

    kind = "Apache Kafka " + KAFKA_VERSION
    durable = True
    can_restart = True
    restart_skip_reason = ""

    def __init__(self, libs: Path | None = None, workdir: Path | None = None, heap: str = "512m",
                 start_timeout: float = 180.0) -> None:  # fmt: skip
        self.libs = libs or kafka_libs_dir()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="edge-mnist-kafka-"))
        self.heap = heap
        self.start_timeout = start_timeout
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.log_path = self.workdir / "kafka.log"
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._java: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=(self.bootstrap_servers,))

    def _props(self) -> dict[str, str]:
        """server.properties as a dict; subclasses change listeners, security, replication."""
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
        }

    def _properties(self) -> str:
        return "".join(f"{k}={v}\n" for k, v in self._props().items())

    def _format_args(self) -> list[str]:
        """How `kafka-storage format` makes this node: one node, its own controller quorum."""
        return ["-t", random_cluster_id(), "--standalone"]

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        assert self._java is not None
        return [self._java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                "-cp", str(self.libs / "*"), main, *args]  # fmt: skip

    def _format(self) -> None:
        config = self.workdir / "server.properties"
        config.write_text(self._properties())
        (self.workdir / "log4j2.properties").write_text(LOG4J2)
        if (self.workdir / "data" / "meta.properties").exists():
            return
        cmd = self._java_cmd("kafka.tools.StorageTool", "format", "-c", str(config), *self._format_args())
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise KafkaNotAvailable(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")

    def start(self) -> ApacheKafka:
        """Start (or start again, same port and data) and wait until it serves metadata."""
        if self.running:
            return self
        began = self.launch()
        self._wait_ready(began)
        self.startup_seconds = time.monotonic() - began
        return self

    def launch(self) -> float:
        """Format if new and start the JVM without waiting (a cluster starts all nodes first)."""
        began = time.monotonic()
        self._java = self._java or _check_java()
        resolve_jars(self.libs)
        self._format()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._java_cmd("kafka.Kafka", str(self.workdir / "server.properties")),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=parent_death_hook(),
            )  # fmt: skip
        _LIVE.add(self)
        return began

    def kill(self) -> None:
        """SIGKILL, as a crashed machine: no flush, no controlled shutdown; data stays on disk."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    def _wait_ready(self, began: float) -> None:
        remaining = self.start_timeout - (time.monotonic() - began)
        ok = wait_for_port(self.port, remaining, alive=lambda: self.running)
        if ok:
            try:
                wait_for_broker(self.settings(), max(5.0, self.start_timeout - (time.monotonic() - began)))
                return
            except Exception:  # reported below with the log tail
                pass
        code = self._proc.poll() if self._proc else None
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        raise KafkaStartFailed(
            f"Apache Kafka did not become ready on {self.bootstrap_servers} within {self.start_timeout:g} s "
            f"(exit code {code}); log {self.log_path}:\n{tail}"
        )

    def stop(self) -> None:
        """Graceful SIGTERM (Kafka flushes its logs), then SIGKILL; data stays on disk."""
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, grace=30.0)

    def restart(self, downtime: float = 0.0) -> None:
        self.stop()
        time.sleep(downtime)
        self.start()

    pause = restart

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """``with kafka.stopped(): ...`` runs the body while the broker is down."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def close(self) -> None:
        """Stop for good and delete the data directory."""
        self.stop()
        _LIVE.discard(self)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class NotRestartable:
    """A broker the tests may use but not stop: fault tests skip with `restart_skip_reason`."""

    durable = False
    can_restart = False
    restart_skip_reason = ""

    def stop(self) -> None:
        raise KafkaNotAvailable(self.restart_skip_reason)

    def restart(self, downtime: float = 0.0) -> None:
        raise KafkaNotAvailable(self.restart_skip_reason)


class ExternalKafka(NotRestartable):
    """A broker someone else runs (``KAFKA_BOOTSTRAP_SERVERS``); never stopped by the tests."""

    kind = "external Kafka (KAFKA_BOOTSTRAP_SERVERS)"
    durable = False
    can_restart = False
    restart_skip_reason = "the broker comes from KAFKA_BOOTSTRAP_SERVERS; tests cannot stop and restart it"

    def __init__(self, bootstrap_servers: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.startup_seconds: float | None = None
        self.log_path: Path | None = None

    def settings(self) -> KafkaSettings:
        return resolve(bootstrap_servers=self.bootstrap_servers)

    def start(self) -> ExternalKafka:
        began = time.monotonic()
        wait_for_broker(self.settings(), 60)
        self.startup_seconds = time.monotonic() - began
        return self

    def close(self) -> None:
        pass


@atexit.register
def _kill_leftovers() -> None:
    for kafka in list(_LIVE):
        with contextlib.suppress(Exception):
            kafka.close()
