"""What a dashboard viewer costs: CPU seconds per minute of each viewer's Voila kernel, live and idle.

A real hub with cameras (`edge-mnist demo --no-dashboard` on free ports, or `--api-url` of a running
one), a real Voila serving `notebooks/render-metro-views.ipynb`, and headless Chromium pages as the
viewers. For 1 and 5 viewers (`--viewers`), one fresh Voila each: the pages load, the kernels warm
up, then every kernel's CPU time (Linux /proc, user + system) is read over `--seconds` of the live
views; the budget is 0.05 of a core (3 CPU s/min) per viewer.

    .venv/bin/python bench/dashboard.py [--viewers 1,5] [--seconds 60] [--api-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_json, table  # noqa: E402
from edgemnist.procs import stop_all  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "render-metro-views.ipynb"
BUDGET = 3.0  # CPU seconds per minute per viewer: 0.05 of a core
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise SystemExit(f"bench/dashboard.py: waited {timeout:.0f} s for {what}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def kernels(parent: int) -> list[int]:
    """The ipykernel processes Voila started (its children running ipykernel_launcher)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) == parent and b"ipykernel" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
    return sorted(found)


@contextlib.contextmanager
def demo_hub(tmp: Path) -> Iterator[str]:
    """`edge-mnist demo --no-dashboard` on free ports: broker, hub, three cameras."""
    port = free_port()
    log = open(tmp / "demo.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgemnist_demo", "--no-dashboard", "--no-browser", f"--port={port}",
         "--state-dir", str(tmp / "state"), "--model", str(ROOT / "models")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait(lambda: listening(port) or proc.poll() is not None, 180, "the demo hub")
        if proc.poll() is not None:
            raise SystemExit(f"the demo stopped: {(tmp / 'demo.log').read_text()[-2000:]}")
        print(f"hub: edge-mnist demo on http://127.0.0.1:{port} (log {tmp / 'demo.log'})", flush=True)
        time.sleep(20)  # cameras connect and send their first windows
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@contextlib.contextmanager
def voila(api_url: str, tmp: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ,
        "EDGE_MNIST_API_URL": api_url,
        "MPLBACKEND": "Agg",
        "EDGE_MNIST_DASHBOARD_TICKS": "0",
    }
    env.setdefault("EDGE_MNIST_API_TOKEN", "demo-token")
    log = open(tmp / f"voila-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        wait(lambda: listening(port), 90, "voila")
        yield f"http://127.0.0.1:{port}/", proc
    finally:
        stop_all([proc])
        log.close()


def measure(api_url: str, viewers: int, seconds: float, warmup: float, tmp: Path) -> dict[str, Any]:
    """Open `viewers` pages on one fresh Voila; CPU s/min of each kernel over `seconds` of live views."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("bench/dashboard.py needs Debian's chromium (apt-get install chromium)")
    with voila(api_url, tmp) as (url, server), sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"], headless=True
        )
        try:
            pages = [browser.new_page(viewport={"width": 1280, "height": 900}) for _ in range(viewers)]
            for page in pages:
                page.goto(url, timeout=180_000)
            for page in pages:
                page.locator(".metro-camera-panel .metro-live-accuracy").first.wait_for(timeout=180_000)
            wait(lambda: len(kernels(server.pid)) >= viewers, 60, f"{viewers} kernels")
            time.sleep(warmup)
            pids = kernels(server.pid)
            before = {pid: cpu_seconds(pid) for pid in pids}
            server_before = cpu_seconds(server.pid)
            start = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - start
            after = {pid: cpu_seconds(pid) for pid in pids}
            server_after = cpu_seconds(server.pid)
            refreshes = [page.locator(".metro-ticker-status").inner_text() for page in pages]
        finally:
            browser.close()
    per_min = sorted((after[pid] - before[pid]) * 60 / wall for pid in pids)
    return {
        "viewers": viewers,
        "kernels": len(pids),
        "cpu_s_per_min_per_viewer_mean": sum(per_min) / len(per_min),
        "cpu_s_per_min_per_viewer_max": per_min[-1],
        "voila_server_cpu_s_per_min": (server_after - server_before) * 60 / wall,
        "seconds": wall,
        "status": refreshes[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--viewers", default="1,5", help="viewer counts, comma-separated [default: %(default)s]"
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="measured seconds per count [default: %(default)s]"
    )
    parser.add_argument(
        "--warmup", type=float, default=20.0, help="seconds after the pages load [default: %(default)s]"
    )
    parser.add_argument(
        "--api-url", default=None, help="a running hub (else `edge-mnist demo --no-dashboard` starts one)"
    )
    args = parser.parse_args(argv)
    counts = [int(v) for v in args.viewers.split(",") if v.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp_name:
        tmp = Path(tmp_name)
        hub = contextlib.nullcontext(args.api_url) if args.api_url else demo_hub(tmp)
        with hub as api_url:
            results = [measure(api_url, n, args.seconds, args.warmup, tmp) for n in counts]
    rows = [
        (
            r["viewers"],
            r["cpu_s_per_min_per_viewer_mean"],
            r["cpu_s_per_min_per_viewer_max"],
            r["cpu_s_per_min_per_viewer_mean"] / 60,
            r["voila_server_cpu_s_per_min"],
            "yes" if r["cpu_s_per_min_per_viewer_max"] <= BUDGET else "NO",
        )
        for r in results
    ]
    print(
        table(
            ["viewers", "kernel CPU s/min (mean)", "max", "cores per viewer", "Voila server CPU s/min",
             f"within {BUDGET:g} s/min"],
            rows,
        )
    )  # fmt: skip
    for r in results:
        print(f"{r['viewers']} viewer(s), first page says: {r['status']}")
    print_json({"bench": "dashboard", "budget_cpu_s_per_min": BUDGET, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
