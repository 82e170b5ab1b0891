"""`edge-mnist fleet-sim`: N simulated cameras against K hubs on one PostgreSQL, measured.

Per hub count: a fresh topic (`--partitions`, keyed by camera) and a fresh database; K
`metro-app run` processes in one consumer group; `--workers` processes sending the cameras'
windows and uncertain images (`edge_app.fleetsim`) for `--duration` seconds while views are
asked for what a dashboard asks: of one more hub that ingests nothing (`--no-ingest`, its own
process, as a deployment at fleet size serves its dashboards), or with `--no-api-hub` of the
ingesting hubs. Then the hubs drain, and the run reports offered and
stored messages/s, lag, edge-to-store latency, view latency, hub RSS, store growth, whether rows
stored equal messages acknowledged, and which process saturated first.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from edge_app.fleetsim import FleetPlan
from edgemnist.kafka import GroupLag, ensure_topics
from edgemnist.kafka.settings import resolve
from edgemnist_demo.fleetload import ViewProbe, cpu_seconds, generate, machine_busy, pids_matching, rss_bytes
from edgemnist_demo.fleetreport import Sample, summarise
from metro_app.ingest.loop import group_id
from metro_app.store import Store
from metro_app.testing import HubProcess

__all__ = ["FleetOptions", "Services", "run_fleet", "run_hubs"]


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """One simulator invocation: the cameras, the hub counts to run, and how long."""

    plan: FleetPlan = field(default_factory=FleetPlan)
    hubs: tuple[int, ...] = (1,)
    partitions: int = 12
    duration: float = 60.0
    workers: int = 2
    drain: float = 120.0
    sample_every: float = 2.0
    api_hub: bool = True  # views asked of one more hub that ingests nothing (`metro-app run --no-ingest`)
    ingest_nice: int = 10  # the ingesting hubs' nice value: backlog-tolerant work yields the CPU to views

    def __post_init__(self) -> None:
        if not self.hubs or min(self.hubs) < 1 or max(self.hubs) > self.partitions:
            raise ValueError(f"--hubs {self.hubs}: each count between 1 and --partitions ({self.partitions})")
        if not 0 <= self.ingest_nice <= 19:
            raise ValueError(f"--ingest-nice {self.ingest_nice}: a nice value between 0 and 19")
        if self.duration <= 0 or self.workers < 1 or self.partitions < 1:
            raise ValueError("--duration, --workers and --partitions must be positive")


@dataclass(frozen=True, slots=True)
class Services:
    """Where the runs go: a broker, a way to get a fresh database, and how to find their processes."""

    bootstrap: str
    fresh_database: Callable[[str], str]
    work: Path
    broker_marker: str | None = None  # text in the broker's command line (its data directory)
    database_marker: str | None = None  # text in PostgreSQL's command lines (its data directory)


def run_fleet(opts: FleetOptions, services: Services, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every hub count of `opts`, one after the other; the result the JSON line carries."""
    runs = [run_hubs(opts, k, services, say) for k in opts.hubs]
    metrics, images = opts.plan.offered_per_second()
    return {
        "bench": "fleet",
        "cameras": opts.plan.cameras,
        "window_s": opts.plan.window,
        "fps": opts.plan.fps,
        "uncertain_share": opts.plan.uncertain_share,
        "drift_share": opts.plan.drift_share,
        "partitions": opts.partitions,
        "duration_s": opts.duration,
        "workers": opts.workers,
        "views_from": "an API hub (--no-ingest)" if opts.api_hub else "the ingesting hubs",
        "ingest_nice": opts.ingest_nice,
        "cores": os.cpu_count(),
        "target_msgs_per_s": round(metrics + images),
        "runs": runs,
    }


def run_hubs(opts: FleetOptions, k: int, services: Services, say: Callable[[str], None]) -> dict[str, Any]:
    """One run: K hubs on a fresh topic and database under the simulated fleet."""
    settings = resolve(bootstrap_servers=services.bootstrap)
    stamp = time.time_ns()
    topic = f"fleet-{k}h-{stamp}"
    ensure_topics(settings, {topic: opts.partitions})
    url = services.fresh_database(f"fleet_{k}h_{stamp}")
    Store(url).close()  # the tables, before K hubs race to create them
    hubs = [
        HubProcess(services.bootstrap, topic, url, services.work / f"hub-{k}h-{i}.log", nice=opts.ingest_nice)
        for i in range(k)
    ]
    api = (
        HubProcess(services.bootstrap, topic, url, services.work / f"hub-{k}h-api.log", extra=["--no-ingest"])
        if opts.api_hub
        else None
    )
    engine = sa.create_engine(url, pool_pre_ping=True)
    started = [*hubs, *([api] if api else [])]
    try:
        for h in started:
            h.start()
        say(f"fleet: {k} hub(s) up on {topic} ({opts.partitions} partitions)"
            + (f", views asked of an API hub on port {api.port}" if api else ""))  # fmt: skip
        return _measure(opts, k, services, hubs, api, topic, engine, settings, say)
    finally:
        for h in started:
            h.stop()
        engine.dispose()


def _measure(opts: FleetOptions, k: int, services: Services, hubs: list[HubProcess], api: HubProcess | None,
             topic: str, engine: sa.engine.Engine, settings: Any, say: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go, start_at = ctx.Event(), ctx.Value("d", 0.0)
    workers = [
        ctx.Process(target=generate, args=(opts.plan, w, opts.workers, services.bootstrap, topic, go, start_at,
                                            opts.duration, out), daemon=True)
        for w in range(opts.workers)
    ]  # fmt: skip
    for p in workers:
        p.start()
    acked: dict[int, tuple[int, int]] = {}
    done: dict[int, tuple[int, int, int, float, float]] = {}
    _wait_for(out, "ready", opts.workers, acked, done, 300)
    lag = GroupLag(settings, topic, group_id(topic))
    groups = {
        "hub": [h.proc.pid for h in hubs if h.proc is not None],
        "generator": [p.pid for p in workers if p.pid is not None],
        "postgres": pids_matching(services.database_marker) if services.database_marker else [],
        "broker": pids_matching(services.broker_marker) if services.broker_marker else [],
    } | ({"api": [api.proc.pid]} if api is not None and api.proc is not None else {})
    viewed = [api] if api is not None else hubs
    probe = ViewProbe([h.client for h in viewed], opts.plan)
    samples: list[Sample] = []
    start = time.time() + 1.0
    start_at.value = start
    go.set()
    probe.start()
    size0 = _db_size(engine)
    stop_at = start + opts.duration
    try:
        while True:
            _drain_queue(out, acked, done)
            samples.append(_sample(start, engine, lag, groups, hubs, acked))
            if len(done) == opts.workers and samples[-1].t >= opts.duration:
                break
            if time.time() > stop_at + 300:
                raise RuntimeError("fleet: the load workers did not finish 300 s after the run's end")
            time.sleep(opts.sample_every)
    finally:
        probe.stop()
    size1 = _db_size(engine)
    say(f"fleet: {k} hub(s): load done, draining")
    drain_from = time.time()
    while (s := samples[-1]).lag > 0 or s.stored < s.acked:
        if time.time() - drain_from > opts.drain:
            break
        time.sleep(1.0)
        samples.append(_sample(start, engine, lag, groups, hubs, acked))
    drain_s = time.time() - drain_from
    lag.close()
    for p in workers:
        p.join(30)
    load_s = max(d[4] for d in done.values()) - start  # until the last worker sent what was due
    latency, rows = _latency(engine), _rows(engine)
    run = summarise(k, opts, samples, done, probe, latency, rows, size1 - size0, drain_s, load_s)
    health = viewed[0].client.health()
    return run | {
        "cameras_listed": viewed[0].client.fleet_summary()["cameras"],
        # what the hub the views were asked of says of itself: an API hub consumes nothing
        "views_hub": {"ingest": health["consumer"].get("ingest"), "stored": health["stored"]},
        "nice": {"hubs": [_nice(h) for h in hubs], "views_hub": _nice(viewed[0])},  # as the kernel has them
    }


def _nice(hub: HubProcess) -> int | None:
    return None if hub.proc is None else os.getpriority(os.PRIO_PROCESS, hub.proc.pid)


def _wait_for(out: Any, kind: str, n: int, acked: dict, done: dict, timeout: float) -> None:
    seen = 0
    deadline = time.time() + timeout
    while seen < n:
        try:
            msg = out.get(timeout=max(0.1, deadline - time.time()))
        except queue.Empty:
            raise RuntimeError(f"fleet: {n - seen} load worker(s) not {kind} after {timeout:.0f} s") from None
        seen += msg[0] == kind


def _drain_queue(out: Any, acked: dict, done: dict) -> None:
    while True:
        try:
            msg = out.get_nowait()
        except queue.Empty:
            return
        if msg[0] == "tick":
            acked[msg[1]] = (msg[2], msg[3])
        elif msg[0] == "done":
            acked[msg[1]] = (msg[2], msg[3])
            done[msg[1]] = (msg[2], msg[3], msg[4], msg[5], msg[6])


def _sample(start: float, engine: sa.engine.Engine, lag: GroupLag, groups: dict[str, list[int]],
            hubs: list[HubProcess], acked: dict) -> Sample:  # fmt: skip
    parts = lag()
    with engine.connect() as conn:
        m = conn.exec_driver_sql("SELECT count(*) FROM metrics_windows").scalar_one()
        i = conn.exec_driver_sql("SELECT count(*) FROM uncertain_images").scalar_one()
    return Sample(
        t=time.time() - start,
        acked=sum(a + b for a, b in acked.values()),
        stored=int(m) + int(i),
        lag=sum(max(0, end - got) for end, got in parts.values()),
        records=sum(end for end, _ in parts.values()),
        cpu={name: cpu_seconds(pids) for name, pids in groups.items()}
        | {f"hub{n}": cpu_seconds([p]) for n, p in enumerate(groups["hub"])},
        machine=machine_busy(),
        rss=[rss_bytes(h.proc.pid) for h in hubs if h.proc is not None],
    )


def _db_size(engine: sa.engine.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())


def _latency(engine: sa.engine.Engine) -> dict[str, float | None]:
    """Edge-to-store seconds (stored minus the edge's timestamp), p50 and p99, over every row."""
    sql = (
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d), percentile_cont(0.99) WITHIN GROUP (ORDER BY d) "
        "FROM (SELECT received - ts AS d FROM uncertain_images UNION ALL "
        "SELECT received - ts FROM metrics_windows) AS x"
    )
    with engine.connect() as conn:
        p50, p99 = conn.exec_driver_sql(sql).one()
    return {"p50": p50, "p99": p99}


def _rows(engine: sa.engine.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            "metrics": int(conn.exec_driver_sql("SELECT count(*) FROM metrics_windows").scalar_one()),
            "images": int(conn.exec_driver_sql("SELECT count(*) FROM uncertain_images").scalar_one()),
            "distinct_metrics": int(
                conn.exec_driver_sql("SELECT count(DISTINCT msg_id) FROM metrics_windows").scalar_one()
            ),
            "distinct_images": int(
                conn.exec_driver_sql("SELECT count(DISTINCT msg_id) FROM uncertain_images").scalar_one()
            ),
        }
