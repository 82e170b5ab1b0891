"""A Kafka Connect worker running Debezium's PostgreSQL connector, as a background process we own.

Standalone mode, on purpose: Debezium's PostgreSQL connector runs exactly one
task per database (one replication slot), so a distributed cluster would buy
only fail-over, at the price of three internal topics on the user's Kafka and a
group to form. The standalone worker keeps its source offsets (the WAL position
each connector has reached) in a file under the state directory, so a restarted
worker resumes where it stopped; connector configs are re-submitted by every
``edge-mnist cdc start``. Its REST API listens on loopback only.

Jars come from Maven Central through two poms in the repo, cached like Kafka's:
``kafka/connect-pom.xml`` (the Connect 4.1.1 runtime, on the classpath) and
``kafka/debezium-pom.xml`` (Debezium 3.6.1.Final, a plugin in its own folder on
``plugin.path``, class-loader isolated). Secrets (the database password, Kafka
SASL/TLS settings) go to files readable by the owner only, never to argv; the
connector reads the password through Kafka's ``FileConfigProvider``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgemnist.errors import ConfigError, EdgeMnistError
from edgemnist.files import write_atomic
from edgemnist.kafka.settings import KafkaSettings, state_dir
from edgemnist.procs import free_port
from edgemnist_cdc.debezium import ConnectorSpec, debezium_config, password_of

__all__ = [
    "CONNECT_VERSION",
    "DEBEZIUM_VERSION",
    "ConnectError",
    "ConnectWorker",
    "connect_home",
    "resolve_connect_jars",
]

CONNECT_VERSION = "4.1.1"
DEBEZIUM_VERSION = "3.6.1.Final"
PLUGIN = "debezium-connector-postgres"
_REPO_KAFKA = Path(__file__).resolve().parents[1] / "kafka"
_LOG4J2 = """\
status = error
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""


class ConnectError(EdgeMnistError):
    """The Connect worker or a connector did not do what was asked; the message says which and why."""


def connect_home() -> Path:
    """Where the worker's jars live: $EDGE_MNIST_CONNECT_HOME or the user's cache."""
    env = os.environ.get("EDGE_MNIST_CONNECT_HOME")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "edge-mnist" / f"connect-{CONNECT_VERSION}-debezium-{DEBEZIUM_VERSION.split('.Final')[0]}"


def resolve_connect_jars(home: Path | None = None) -> Path:
    """The jar folder, fetched with Maven first when empty (what ``make connect-jars`` does)."""
    home = home or connect_home()
    libs, plugin = home / "libs", home / "plugins" / PLUGIN
    if any(libs.glob("connect-runtime-*.jar")) and any(plugin.glob("debezium-connector-postgres-*.jar")):
        return home
    mvn = shutil.which("mvn")
    if mvn is None or not (_REPO_KAFKA / "connect-pom.xml").exists():
        raise ConfigError(
            f"no Kafka Connect / Debezium jars in {home}: run `make connect-jars` in a checkout "
            "(needs Maven), or set EDGE_MNIST_CONNECT_HOME to a folder with libs/ and plugins/"
        )
    for pom, out in (("connect-pom.xml", libs), ("debezium-pom.xml", plugin)):
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(_REPO_KAFKA / pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise ConfigError(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return home


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ConfigError("Java 17+ is needed to run Kafka Connect: apt-get install openjdk-17-jre-headless")
    return java


def _client_security(settings: KafkaSettings) -> dict[str, str]:
    """The Java client properties for reaching Kafka as ``settings`` says (no bootstrap servers)."""
    props = {"security.protocol": settings.security_protocol}
    if settings.uses_sasl:
        module = "plain.PlainLoginModule" if settings.sasl_mechanism == "PLAIN" else "scram.ScramLoginModule"
        user, password = (json.dumps(v or "") for v in (settings.sasl_username, settings.sasl_password))
        props["sasl.mechanism"] = str(settings.sasl_mechanism)
        props["sasl.jaas.config"] = (
            f"org.apache.kafka.common.security.{module} required username={user} password={password};"
        )
    if settings.uses_ssl:
        if settings.ssl_cafile:
            props |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": settings.ssl_cafile}
        if settings.ssl_certfile:
            chain = Path(settings.ssl_certfile).read_text()
            key = Path(settings.ssl_keyfile).read_text() if settings.ssl_keyfile else chain
            props |= {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.certificate.chain": chain,
                "ssl.keystore.key": key,
            }
            if settings.ssl_password:
                props["ssl.key.password"] = settings.ssl_password
    return props


def _properties(props: dict[str, str]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "")

    return "".join(f"{k}={esc(v)}\n" for k, v in props.items())


def _write_private(path: Path, text: str) -> None:
    """Worker and connector files hold passwords: mode 0600 from their creation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode(), mode=0o600)


class ConnectWorker:
    """The standalone worker whose pid, port and log are recorded in ``<root>/worker.json``."""

    def __init__(self, root: Path | None = None, external_url: str | None = None) -> None:
        self.root = root or state_dir() / "connect"
        self.state_path = self.root / "worker.json"
        self.external_url = external_url.rstrip("/") if external_url else None

    # ----- state ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.state_path.read_text()))
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        """The recorded pid is still our worker (its command line names our properties file)."""
        if self.external_url:
            try:
                self.request("GET", "/", timeout=5.0)
                return True
            except ConnectError:
                return False
        state = self.state()
        if state is None:
            return False
        try:
            cmdline = Path(f"/proc/{state['pid']}/cmdline").read_bytes()
        except OSError:
            return False
        return b"ConnectStandalone" in cmdline and str(self.root / "worker.properties").encode() in cmdline

    @property
    def url(self) -> str:
        if self.external_url:
            return self.external_url
        state = self.state()
        if state is None:
            raise ConnectError(f"no Connect worker recorded in {self.state_path}: run `edge-mnist cdc start`")
        return f"http://127.0.0.1:{state['port']}"

    # ----- start / stop --------------------------------------------------------------------------

    def start(
        self,
        kafka: KafkaSettings,
        *,
        port: int = 0,
        heap: str = "512m",
        timeout: float = 180.0,
        preexec_fn: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Start the worker unless it runs; wait for its REST API. Returns the recorded state."""
        servers = ",".join(kafka.bootstrap_servers)
        if self.external_url:
            if not self.alive():
                raise ConnectError(f"no Kafka Connect worker answers at {self.external_url}")
            info = self.request("GET", "/")
            return {"pid": None, "port": None, "bootstrap_servers": "(the worker's own)", "log": "(the worker's own)",
                    "version": info.get("version")}  # fmt: skip
        if self.alive():
            state = self.state() or {}
            if state.get("bootstrap_servers") != servers:
                raise ConfigError(
                    f"the Connect worker in {self.root} writes to {state.get('bootstrap_servers')}, not {servers}: "
                    "`edge-mnist cdc stop` it first"
                )
            return state
        home = resolve_connect_jars()
        java = _java()
        self.root.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        props = self._worker_properties(kafka, port, home)
        _write_private(self.root / "worker.properties", _properties(props))
        (self.root / "log4j2.properties").write_text(_LOG4J2)
        log_path = self.root / "connect.log"
        cmd = [java, f"-Xmx{heap}", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
               "-cp", str(home / "libs" / "*"), "org.apache.kafka.connect.cli.ConnectStandalone",
               str(self.root / "worker.properties")]  # fmt: skip
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=preexec_fn,
            )  # fmt: skip
        state = {"pid": proc.pid, "port": port, "bootstrap_servers": servers, "log": str(log_path),
                 "started": time.time(), "home": str(home)}  # fmt: skip
        self.state_path.write_text(json.dumps(state) + "\n")
        self._wait_rest(proc, timeout)
        return state

    def _worker_properties(self, kafka: KafkaSettings, port: int, home: Path) -> dict[str, str]:
        """worker.properties: JSON converters, offsets in a file, REST on 127.0.0.1, the client security."""
        security = _client_security(kafka)
        return {
            "bootstrap.servers": ",".join(kafka.bootstrap_servers),
            **security,
            **{f"{p}.{k}": v for p in ("producer", "consumer", "admin") for k, v in security.items()},
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "true",
            "value.converter.schemas.enable": "true",
            "offset.storage.file.filename": str(self.root / "offsets.dat"),
            "offset.flush.interval.ms": "1000",
            "listeners": f"http://127.0.0.1:{port}",
            "rest.advertised.host.name": "127.0.0.1",
            "plugin.path": str(home / "plugins"),
            "config.providers": "file",
            "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
        }

    def _wait_rest(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                self.request("GET", "/")
                return
            except ConnectError:
                time.sleep(0.3)
        code = proc.poll()
        self.stop()
        raise ConnectError(
            f"Kafka Connect did not serve its REST API within {timeout:g} s (exit code {code}); "
            f"log {self.root / 'connect.log'}:\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.root / "connect.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 30.0) -> bool:
        """SIGTERM the worker's process group (connectors flush their offsets), SIGKILL after ``grace``."""
        if self.external_url:
            raise ConfigError(f"the Connect worker at {self.external_url} is not ours to stop; use --name")
        state = self.state()
        was_alive = self.alive()
        if state is not None and was_alive:
            pid = int(state["pid"])
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    break
                if _wait_gone(pid, wait):
                    break
        self.state_path.unlink(missing_ok=True)
        return was_alive

    # ----- REST ----------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise ConnectError(f"Kafka Connect {method} {path}: HTTP {exc.code} {detail}") from exc
        except OSError as exc:
            raise ConnectError(f"Kafka Connect at {self.url} is not answering: {exc}") from exc
        return json.loads(raw) if raw else None

    def put_connector(self, spec: ConnectorSpec) -> dict[str, str]:
        """Create or update the connector; its database password goes to a private file first."""
        secret = self.root / "secrets" / f"{spec.name}.properties"
        config = debezium_config(spec, secret)
        if self.external_url:  # its file system is not ours: the password goes in the config (REST only)
            config["database.password"] = password_of(spec.url)
        else:
            _write_private(secret, _properties({"password": password_of(spec.url)}))
        self.request("PUT", f"/connectors/{urllib.parse.quote(spec.name)}/config", config)
        return config

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/connectors/{urllib.parse.quote(name)}/status"))

    def connectors(self) -> list[str]:
        return list(self.request("GET", "/connectors"))

    def delete_connector(self, name: str) -> None:
        self.request("DELETE", f"/connectors/{urllib.parse.quote(name)}")
        (self.root / "secrets" / f"{name}.properties").unlink(missing_ok=True)

    def wait_running(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the connector and its task are RUNNING; a FAILED one raises with its trace."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                status = self.status(name)
            except ConnectError:
                status = {}
            states = [status.get("connector", {}).get("state")] + [
                t.get("state") for t in status.get("tasks", [])
            ]
            if "FAILED" in states:
                trace = next((t.get("trace", "") for t in status.get("tasks", []) if t.get("trace")), "")
                trace = trace or status.get("connector", {}).get("trace", "")
                raise ConnectError(f"connector {name} FAILED: {trace[:1500]}")
            if len(states) > 1 and all(s == "RUNNING" for s in states):
                return status
            time.sleep(0.3)
        raise ConnectError(
            f"connector {name} not RUNNING after {timeout:g} s: {status}\n{self.log_tail(1500)}"
        )


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)  # our child (tests) is reaped here
            if done:
                return True
        except ChildProcessError:
            pass
        if not Path(f"/proc/{pid}").exists():
            return True
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.1)
    return False
