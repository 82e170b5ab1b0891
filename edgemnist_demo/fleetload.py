"""What the fleet simulator runs beside the hubs: load workers, and the probes that measure a run.

- `generate`: one worker process sending its share of the simulated cameras to Kafka (keyed by
  camera, acks=all, through the edge's `EventProducer`), reporting what Kafka acknowledged;
- `cpu_seconds`, `rss_bytes`, `pids_matching`, `machine_busy`: process and machine figures
  from /proc (Linux);
- `ViewProbe`: view latencies under load (the group's lag: `edgemnist.kafka.GroupLag`).
"""

from __future__ import annotations

import os
import random
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge_app.fleetsim import FleetPlan, SimulatedFleet, camera_names
from edgemnist.kafka.producer import EventProducer
from edgemnist.kafka.settings import resolve
from metro_app.client import ApiError, ViewClient

__all__ = ["generate", "cpu_seconds", "rss_bytes", "pids_matching", "machine_busy", "ViewProbe"]

TICK = 0.1  # seconds between two sends of a worker
CHUNK = 2000  # records per send at most, so a worker that falls behind still reports
_CLK = os.sysconf("SC_CLK_TCK")


def generate(plan: FleetPlan, worker: int, workers: int, bootstrap: str, topic: str, go: Any, start_at: Any,
             duration: float, out: Any) -> None:  # fmt: skip
    """Once `go` is set, send camera messages for `duration` seconds from `start_at`, then resend
    what failed; report on `out`.

    Everything due by the end is sent, however late. Reports ("tick", worker, metrics acked,
    images acked) each second and ("done", worker, metrics, images, unsent, seconds it finished
    after the load's end, when) at the end.
    """
    acked = [0, 0]  # images, metrics
    retry: list[tuple[bytes, bytes, bool]] = []
    with (
        SimulatedFleet(plan, worker, workers) as fleet,
        EventProducer(resolve(bootstrap_servers=bootstrap)) as prod,
    ):
        prod.open(60)
        out.put(("ready", worker))
        go.wait()
        start = float(start_at.value)
        stop_at = start + duration
        fleet.begin(start)
        time.sleep(max(0.0, start - time.time()))
        reported = time.time()
        backlog: deque[tuple[bytes, bytes, bool]] = deque()
        while (now := time.time()) < stop_at or backlog or retry:
            backlog.extend((o.camera.encode(), o.value, o.is_metrics) for o in fleet.due(min(now, stop_at)))
            batch = retry + [backlog.popleft() for _ in range(min(len(backlog), CHUNK))]
            retry = _send(prod, topic, batch, acked)
            if time.time() - reported >= 1.0:
                out.put(("tick", worker, acked[1], acked[0]))
                reported = time.time()
            if now >= stop_at and time.time() > stop_at + 600:
                break  # a broker that takes nothing for ten minutes: report what is left unsent
            if not backlog:
                time.sleep(max(0.0, TICK - (time.time() - now)))
    late = max(0.0, time.time() - stop_at)
    out.put(("done", worker, acked[1], acked[0], len(retry) + len(backlog), late, time.time()))


def _send(prod: EventProducer, topic: str, batch: list[tuple[bytes, bytes, bool]], acked: list[int]) -> list:
    """Send a batch; count what Kafka acknowledged by kind; return the records to send again."""
    if not batch:
        return []
    results = prod.send_batch(topic, [(k, v) for k, v, _ in batch], timeout=30)
    again = []
    for rec, err in zip(batch, results, strict=True):
        if err is None:
            acked[rec[2]] += 1
        else:
            again.append(rec)
    return again


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of processes and their children (gone processes count 0)."""
    total = 0.0
    for pid in _with_children(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLK
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of one process, 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _parents() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return out


def _with_children(pids: Iterable[int]) -> set[int]:
    found = set(pids)
    parents = _parents()
    grew = True
    while grew:
        more = {p for p, pp in parents.items() if pp in found} - found
        found |= more
        grew = bool(more)
    return found


def pids_matching(text: str) -> list[int]:
    """Processes whose command line holds `text` (a broker's or a database's data directory)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / _CLK, sum(values) / _CLK


class ViewProbe(threading.Thread):
    """Asks the hubs for the pages a dashboard asks for, one request at a time, and times each one."""

    def __init__(self, clients: list[ViewClient], plan: FleetPlan, pause: float = 0.2) -> None:
        super().__init__(daemon=True)
        self._clients, self._pause = clients, pause
        self._names = camera_names(plan)
        self.times: dict[str, list[float]] = {"cameras": [], "summary": [], "camera": [], "views": []}
        self.errors = 0
        self._halt = threading.Event()

    def _ask(self, kind: str, client: ViewClient, path: str) -> Any:
        t0 = time.perf_counter()
        try:
            got = client._json(path)
        except ApiError:
            self.errors += 1
            return None
        self.times[kind].append(time.perf_counter() - t0)
        return got

    def run(self) -> None:
        rng = random.Random(1)
        k = 0
        while not self._halt.is_set():
            client = self._clients[k % len(self._clients)]
            k += 1
            sort = rng.choice(["accuracy", "uncertain", "p99", "name"])
            offset = rng.choice([0, 0, rng.randrange(0, max(1, len(self._names)))])
            q = urllib.parse.quote(rng.choice(self._names)[-3:])
            page = self._ask("cameras", client, f"/cameras?sort={sort}&limit=50&offset={offset}")
            self._ask("cameras", client, f"/cameras?q={q}&limit=50&sort=accuracy")
            self._ask("summary", client, "/cameras/summary")
            if page and page["cameras"]:  # a camera of the page opened, as a person clicks one
                name = urllib.parse.quote(rng.choice(page["cameras"])["name"], safe="")
                self._ask("camera", client, f"/cameras/{name}?recent_windows=60&recent_images=6")
            self._ask("views", client, "/views/CameraHealth?after=0&max=100")
            # the newest 24 images, found as the dashboard's gallery finds them: the view's last seq first
            head = self._ask("views", client, "/views/UncertainPredictions?after=0&max=1")
            unc = head["last_seq"] if head else 0
            self._ask("views", client, f"/views/UncertainPredictions?after={max(0, unc - 24)}&max=24")
            self._halt.wait(self._pause)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
