"""HEALTHCHECK of the edge image: is this container's edge alive, scoring, and delivering home?

For each ``edge-app run`` process that shares this container's root file system, it is healthy when:

1. the process is running (not a zombie, not stopped);
2. its outbox (the SQLite queue every message passes through) was written to within
   ``--max-silence`` seconds: a metrics window lands there at least once per window, so silence
   means a stuck pipeline (default: 2 x (metrics window + delay) + 30 s, from the edge's own
   flags and EDGE_MNIST_* env);
3. Kafka acknowledged the oldest pending message within ``--max-backlog-age`` seconds: metrics
   are never dropped from the outbox, so an oldest metrics message that stays the oldest means
   nothing is being delivered (broker unreachable, bad credentials, missing topic).

A --dry-run edge has no outbox: only (1) applies. The edge's settings are read from its command
line and environment (/proc), so flags given after the image name count too. Progress for (3) is
remembered between checks in ``<outbox>.health`` beside the outbox. Exit status 0 is healthy, 1
unhealthy (Docker's contract); the one line printed says why.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edge_app.outbox import Outbox
from edge_app.settings import EdgeSettings, add_edge_flags
from edgemnist.errors import EdgeMnistError

__all__ = ["Edge", "check", "find_edges", "main"]

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Edge:
    """One running ``edge-app run`` as seen through /proc."""

    pid: int
    state: str
    args: tuple[str, ...]
    environ: dict[str, str]
    cwd: Path


def _edge_args(argv: list[str]) -> list[str] | None:
    """The arguments after ``run`` if argv is an ``edge-app run`` command line, else None."""
    for i, arg in enumerate(argv):
        if Path(arg).name == "edge-app" or (arg == "-m" and argv[i + 1 : i + 2] == ["edge_app.cli"]):
            rest = argv[i + 1 :] if arg != "-m" else argv[i + 2 :]
            return rest[1:] if rest[:1] == ["run"] else None
    return None


def _same_root(pid: int) -> bool:
    try:
        return os.path.samestat(os.stat(PROC / str(pid) / "root"), os.stat("/"))
    except OSError:
        return False


def _read_proc(pid: int) -> tuple[list[str], dict[str, str], int, str] | None:
    base = PROC / str(pid)
    try:
        argv = [a.decode(errors="replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a]
        stat = (base / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    try:
        raw_env = (base / "environ").read_bytes()
    except OSError:
        raw_env = b""
    env = dict(e.decode(errors="replace").partition("=")[::2] for e in raw_env.split(b"\0") if b"=" in e)
    return argv, env or dict(os.environ), int(fields[1]), fields[0]


def find_edges() -> list[Edge]:
    """Every ``edge-app run`` in this container; a forked scoring worker counts with its parent."""
    found: dict[int, tuple[Edge, int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        info = _read_proc(pid)
        if info is None:
            continue
        argv, env, ppid, state = info
        args = _edge_args(argv)
        if args is None or not _same_root(pid):
            continue
        found[pid] = (Edge(pid, state, tuple(args), env, Path(f"/proc/{pid}/cwd")), ppid)
    return [edge for edge, ppid in found.values() if ppid not in found]


def _settings(edge: Edge) -> EdgeSettings:
    parser = argparse.ArgumentParser(add_help=False)
    add_edge_flags(parser, environ=edge.environ)
    parser.add_argument("--dry-run", action="store_true")
    known, _ = parser.parse_known_args(list(edge.args))
    return EdgeSettings.from_args(known)


def _outbox_path(edge: Edge, settings: EdgeSettings) -> Path:
    if settings.outbox is not None:
        path = settings.outbox
    elif edge.environ.get("EDGE_MNIST_STATE_DIR"):
        path = Path(edge.environ["EDGE_MNIST_STATE_DIR"]) / f"outbox-{settings.camera}.db"
    else:
        home = Path(edge.environ.get("HOME", str(Path.home())))
        path = home / ".local" / "state" / "edge-mnist" / f"outbox-{settings.camera}.db"
    return path if path.is_absolute() else edge.cwd / path


def _pending_since(outbox: Path, seq: int | None, now: float) -> float:
    """When `seq` was first seen as the oldest pending message (remembered across checks)."""
    memo = outbox.with_name(outbox.name + ".health")
    try:
        last = json.loads(memo.read_text())
        since = float(last["since"]) if last.get("seq") == seq else now
    except (OSError, ValueError, KeyError, TypeError):
        since = now
    try:
        tmp = memo.with_name(memo.name + ".tmp")
        tmp.write_text(json.dumps({"seq": seq, "since": since}))
        tmp.replace(memo)
    except OSError:
        pass  # a read-only volume: every check starts afresh, the silence bound still applies
    return since


def check(
    edge: Edge, max_silence: float | None, max_backlog_age: float, now: float | None = None
) -> str | None:
    """None when healthy, else why not."""
    now = time.time() if now is None else now
    if edge.state in {"Z", "X", "T", "t"}:
        return f"edge-app pid {edge.pid} is not running (state {edge.state})"
    try:
        settings = _settings(edge)
    except EdgeMnistError as exc:
        return f"edge-app pid {edge.pid}: {exc}"
    if settings.dry_run:
        return None
    outbox = _outbox_path(edge, settings)
    writes = [p.stat().st_mtime for p in (outbox, Path(f"{outbox}-wal")) if p.exists()]
    if not writes:
        return f"camera {settings.camera}: no outbox at {outbox}"
    silence = (
        max_silence if max_silence is not None else 2 * (settings.metrics_duration + settings.delay) + 30
    )
    quiet = now - max(writes)
    if quiet > silence:
        return (
            f"camera {settings.camera}: outbox {outbox} not written for {quiet:.0f} s "
            f"(limit {silence:.0f} s): the pipeline is stuck"
        )
    try:
        backlog = Outbox.backlog(outbox)
    except sqlite3.Error as exc:
        return f"camera {settings.camera}: cannot read outbox {outbox}: {exc}"
    seq, pending = backlog.oldest_seq, backlog.pending
    if seq is None:
        _pending_since(outbox, None, now)
        return None
    age = now - _pending_since(outbox, seq, now)
    if age > max_backlog_age:
        return (
            f"camera {settings.camera}: Kafka has not acknowledged the oldest message for {age:.0f} s "
            f"({pending} pending in {outbox}); check EDGE_MNIST_BOOTSTRAP_SERVERS and the broker"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-silence",
        type=float,
        default=None,
        help="seconds without an outbox write (default: 2 x (metrics window + delay) + 30)",
    )
    parser.add_argument(
        "--max-backlog-age",
        type=float,
        default=300.0,
        help="seconds the oldest undelivered message may wait for Kafka (default: 300)",
    )
    args = parser.parse_args(argv)
    edges = find_edges()
    if not edges:
        print("unhealthy: no `edge-app run` process in this container")
        return 1
    problems = [p for p in (check(e, args.max_silence, args.max_backlog_age) for e in edges) if p]
    if problems:
        print("unhealthy: " + "; ".join(problems))
        return 1
    print(f"healthy: edge-app pid {', '.join(str(e.pid) for e in edges)} scoring and delivering")
    return 0


if __name__ == "__main__":
    sys.exit(main())
