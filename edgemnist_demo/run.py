"""The demo: the whole system on one machine, started and stopped by one command.

A Kafka-compatible broker (the embedded Tansu binary unless bootstrap servers
are given), the hub as a submitted job, N edge cameras (different delays, the
last one a `Test` camera that sends every image) and, when the dashboards
extra is installed, the Voila dashboard. Ctrl-C (or --duration) stops every
process it started; the last line printed is a JSON summary.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from edgemnist import topics
from edgemnist.errors import BrokerUnavailable, ConfigError
from edgemnist.model import ensure_model
from edgemnist.runsummary import read_summary
from edgemnist.signing import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, init_keys
from edgemnist_demo.broker import LocalBroker, port_in_use, terminate, wait_for_port

__all__ = ["DemoOptions", "run_demo", "camera_plan", "token_line"]

DELAYS = (0.005, 0.02, 0.05)
DRIFT = "rotate:25"  # the demo's drifting camera
HUB_JOB = "edge-mnist-demo-hub"
DASHBOARD = Path(__file__).resolve().parent.parent / "notebooks" / "render-metro-views.ipynb"
SUMMARY = "edge-{}.summary.jsonl"  # in the state dir: each edge's run summary (edge-app run --summary)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    cameras: int = 3
    duration: float = 0.0  # 0 = until Ctrl-C
    bootstrap_servers: str | None = None
    model: Path = Path("models")
    port: int = 8000
    dashboard_port: int = 8866
    dashboard: bool = True
    browser: bool = True
    topic: str = topics.EVENTS
    state_dir: Path | None = None


@dataclass
class _Procs:
    """Every process the demo started, so that all of them are stopped."""

    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.children.append((name, proc))
        return proc

    def dead(self) -> list[str]:
        return [name for name, p in self.children if p.poll() is not None]


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the demo itself is killed, so nothing is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def camera_plan(n: int) -> list[tuple[str, float, str]]:
    """N cameras (name, delay, distortion) with different delays; the second one's frames are rotated
    25 degrees (a drifting camera, so the learning loop has something to learn); the last one is a
    Test camera (sends every image)."""
    if n < 1:
        raise ConfigError(f"--cameras must be at least 1, got {n}")
    names = [f"Camera{i + 1}" for i in range(n - 1)] + ["TestCamera"]
    plan = [(name, DELAYS[i % len(DELAYS)], "") for i, name in enumerate(names)]
    if n >= 3:
        plan[1] = ("Rotated25", plan[1][1], DRIFT)
    return plan


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def _ensure_model(model: Path, say: TextIO) -> Path:
    if not (model.is_file() or (model.is_dir() and any(model.glob("*.skops")))):
        print(f"no model in {model}/: training one on the bundled digits (about 15 s)", file=say)
    return ensure_model(model, progress=True)


def _check_ports(opts: DemoOptions) -> None:
    ports = [("--port", opts.port)] + ([("--dashboard-port", opts.dashboard_port)] if opts.dashboard else [])
    for flag, port in ports:
        if port_in_use(port):
            raise ConfigError(f"port {port} on 127.0.0.1 is already in use: stop what uses it or pass {flag}")


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def _wait_quiet(api: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the hub has consumed everything (lag 0 and counts stable)."""
    deadline, last, health = time.monotonic() + timeout, None, {}
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            health = _get(f"{api}/health")
            now = (health.get("stored"), health.get("dlq"))
            if now == last and not health.get("consumer_lag"):
                break
            last = now
        time.sleep(1.5)
    return health


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _ensure_keys(directory: Path, say: TextIO) -> Path:
    """The demo's model signing key pair, made on first run (the hub signs, the edges trust hub.pub)."""
    if not (directory / PRIVATE_KEY_FILE).exists():
        key = init_keys(directory)
        print(f"keys:   made signing key {key.key_id} in {directory}", file=say)
    return directory


def run_demo(opts: DemoOptions, say: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the demo until `duration` passes, Ctrl-C or SIGTERM; return the summary."""
    # Explicit: a shell's background job starts with SIGINT ignored, and SIGTERM must clean up too.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    _check_ports(opts)
    model = _ensure_model(opts.model, say)
    state, env = _state_dir(opts)
    _demo_keys(state, env, say)
    procs, broker, hub_started = _Procs(), None, False
    api = f"http://127.0.0.1:{opts.port}"
    try:
        servers = opts.bootstrap_servers
        if not servers:
            broker = LocalBroker(log_path=state / "broker.log").start()
            servers = broker.bootstrap_servers
            print(f"broker: embedded Tansu on {servers} (memory only)", file=say)
        hub_started = _submit_hub(opts, servers, model, state, env, say)
        _start_edges(opts, procs, servers, model, state, env, say)
        _start_dashboard(opts, procs, state, env, api, say)
        print(f"API:    {api}/docs  views {api}/views  cameras {api}/cameras", file=say)
        print(token_line(env["EDGE_MNIST_API_TOKEN"], "EDGE_MNIST_API_TOKEN" in os.environ), file=say)
        print(f"state:  {state}", file=say)
        print(
            "running: Ctrl-C stops everything" if not opts.duration else f"running for {opts.duration:g} s",
            file=say,
        )
        _wait(opts.duration, procs, say)
    except KeyboardInterrupt:
        print("\nstopping (Ctrl-C or SIGTERM)", file=say)
    finally:
        summary = _shutdown(procs, broker, hub_started, api, state, env, say)
    return summary


def token_line(token: str, yours: bool) -> str:
    """What the demo tells the person at the terminal (only there) about the API token writes need.

    >>> token_line("demo-token", False)
    'token:  demo-token (operator; labels, retrain and rollouts need it: export EDGE_MNIST_API_TOKEN=demo-token; the dashboard has it)'
    >>> token_line("s3cret", True)
    'token:  yours, from EDGE_MNIST_API_TOKEN (operator; the dashboard has it)'
    """
    if yours:
        return "token:  yours, from EDGE_MNIST_API_TOKEN (operator; the dashboard has it)"
    return (
        f"token:  {token} (operator; labels, retrain and rollouts need it: "
        f"export EDGE_MNIST_API_TOKEN={token}; the dashboard has it)"
    )


def _state_dir(opts: DemoOptions) -> tuple[Path, dict[str, str]]:
    """The demo's state directory (made if missing) and the environment its processes get."""
    state = opts.state_dir or Path(tempfile.mkdtemp(prefix="edge-mnist-demo-"))
    state.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EDGE_MNIST_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
    env.setdefault("EDGE_MNIST_API_TOKEN", "demo-token")
    return state, env


def _demo_tokens(state: Path, token: str) -> Path:
    """The demo hub's tokens file: the dashboards' token (env EDGE_MNIST_API_TOKEN) is an operator's.

    Made on the first run; a later run with another token adds it as a second person.
    """
    from metro_app.access import TokenBook, add_person

    path = state / "api-tokens.json"
    book = TokenBook.load(path) if path.exists() else None
    if book is None or book.person(token) is None:
        add_person(path, "demo" if book is None else f"demo-{len(book) + 1}", "operator", token=token)
    return path


def _demo_keys(state: Path, env: dict[str, str], say: TextIO) -> Path:
    """Make the demo's key pair on first run; the hub signs with it (by path: the key stays in its
    0600 file) and every edge trusts its hub.pub. Returns hub.pub."""
    keys = _ensure_keys(state / "keys", say)
    env["EDGE_MNIST_SIGNING_KEY"] = str(keys / PRIVATE_KEY_FILE)
    return keys / PUBLIC_KEY_FILE


def _submit_hub(
    opts: DemoOptions, servers: str, model: Path, state: Path, env: dict[str, str], say: TextIO
) -> bool:
    """Submit the hub as a job; True once it started (else BrokerUnavailable with its output)."""
    hub = subprocess.run(
        [
            _bin("metro-app"),
            "submit",
            "--name",
            HUB_JOB,
            "--bootstrap-servers",
            servers,
            "--topic",
            opts.topic,
            "--store",
            f"sqlite:///{state / 'hub.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(opts.port),
            "--model",
            str(model),
            "--tokens",  # people and roles; reads stay open so the demo is one command
            str(_demo_tokens(state, env["EDGE_MNIST_API_TOKEN"])),
            "--public-reads",
        ],
        env={k: v for k, v in env.items() if k != "EDGE_MNIST_API_TOKEN"},  # the hub reads the tokens file
        capture_output=True,
        text=True,
        timeout=120,
    )
    if hub.returncode != 0:
        raise BrokerUnavailable(
            f"the hub job did not start: {hub.stderr.strip()[-500:] or hub.stdout[-500:]}"
        )
    print(f"hub:    {hub.stdout.strip()}", file=say)
    return True


def _start_edges(
    opts: DemoOptions, procs: _Procs, servers: str, model: Path, state: Path, env: dict[str, str], say: TextIO
) -> None:
    """One `edge-app run` process per camera of `camera_plan`."""
    for name, delay, distort in camera_plan(opts.cameras):
        procs.start(
            name,
            [
                _bin("edge-app"),
                "run",
                "--camera",
                name,
                "--delay",
                str(delay),
                "--bootstrap-servers",
                servers,
                "--topic",
                opts.topic,
                "--model",
                str(model),
                "--outbox",
                str(state / f"outbox-{name}.db"),
                "--metrics-duration",
                "5",
                "--summary",
                str(state / SUMMARY.format(name)),
                "--trusted-keys",
                str(state / "keys" / PUBLIC_KEY_FILE),
                *(["--distort", distort] if distort else []),
            ],
            state / f"edge-{name}.log",
            env,
        )
        drift = f", frames {distort}" if distort else ""
        print(f"edge:   {name} (delay {delay}s{drift}), log {state / f'edge-{name}.log'}", file=say)


def _start_dashboard(
    opts: DemoOptions, procs: _Procs, state: Path, env: dict[str, str], api: str, say: TextIO
) -> None:
    voila = _bin("voila")
    if not opts.dashboard:
        return
    if not shutil.which(voila) and not Path(voila).exists() or not DASHBOARD.exists():
        print("dashboard: not installed (pip install -e '.[dashboards]' for the Voila dashboard)", file=say)
        return
    denv = {**env, "EDGE_MNIST_API_URL": api}
    proc = procs.start(
        "dashboard",
        [voila, str(DASHBOARD), "--no-browser", f"--port={opts.dashboard_port}", "--Voila.ip=127.0.0.1"],
        state / "dashboard.log",
        denv,
    )
    url = f"http://127.0.0.1:{opts.dashboard_port}"
    if wait_for_port(opts.dashboard_port, 60, alive=lambda: proc.poll() is None):
        print(f"dashboard: {url}", file=say)
        if opts.browser:
            import webbrowser

            webbrowser.open(url)
    else:
        print(f"dashboard: did not start, see {state / 'dashboard.log'}", file=say)


def _wait(duration: float, procs: _Procs, say: TextIO) -> None:
    end = time.monotonic() + duration if duration else float("inf")
    while time.monotonic() < end:
        dead = procs.dead()
        if dead:
            raise ConfigError(f"{', '.join(dead)} stopped unexpectedly; see its log in the state dir")
        time.sleep(0.5)


def _stop_all(procs: _Procs, grace: float = 25.0) -> None:
    """SIGTERM every child at once (edges flush their last window and drain), SIGKILL stragglers."""
    for _, p in procs.children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for _, p in procs.children:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            terminate(p, grace=0.1)


def _shutdown(
    procs: _Procs,
    broker: LocalBroker | None,
    hub_started: bool,
    api: str,
    state: Path,
    env: dict[str, str],
    say: TextIO,
) -> dict[str, Any]:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave orphans behind
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _stop_all(procs)
        cameras = {}
        for name, _ in procs.children:
            s = read_summary(state / SUMMARY.format(name)) if name != "dashboard" else None
            if s:
                cameras[s.get("camera", name)] = {
                    "scored": s.get("scored", 0),
                    "uncertain_sent": s.get("uncertain_sent", 0),
                    "uncertain_dropped": s.get("uncertain_dropped", 0),
                }
        health = _wait_quiet(api) if hub_started else {}
        if hub_started:
            subprocess.run([_bin("metro-app"), "cancel", HUB_JOB], env=env, capture_output=True, timeout=60)
        if broker is not None:
            broker.stop()
        print(f"stopped {len(procs.children) + hub_started + (broker is not None)} processes", file=say)
        stored = health.get("stored", {})
        return {
            "cameras": cameras,
            "stored_metrics": stored.get("metrics", 0),
            "stored_images": stored.get("images", 0),
            "dlq": health.get("dlq", 0),
        }
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
