"""The fleet simulator's figures: one run's samples summarised, the table, and what saturated first."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["Sample", "summarise", "saturation", "table"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at a run: seconds since the load began, and the counters at that moment."""

    t: float
    acked: int  # messages Kafka acknowledged to the load workers
    stored: int  # rows in the store (metrics windows + uncertain images)
    lag: int  # the hub group's lag, summed over partitions
    records: int  # records on the topic (end offsets)
    cpu: dict[str, float]  # CPU seconds so far per process group (hub, hub0.., postgres, broker, generator)
    machine: tuple[float, float]  # (busy, total) CPU seconds of the machine
    rss: list[int]  # bytes per hub


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(values: list[float]) -> dict[str, Any]:
    p50, p99 = _pct(values, 0.5), _pct(values, 0.99)
    return {"p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "p99_ms": None if p99 is None else round(p99 * 1000, 1), "n": len(values)}  # fmt: skip


def summarise(k: int, opts: Any, samples: list[Sample], done: dict, probe: Any, latency: dict, rows: dict,
              growth: int, drain_s: float, load_s: float) -> dict[str, Any]:  # fmt: skip
    """The run's figures as the JSON line carries them.

    Offered: messages acknowledged per second while the workers sent (`load_s`: until the last
    one had sent everything due in the run's duration). Stored: rows per second over the samples
    of that time. CPU: over the samples of the run's duration.
    """
    load = [s for s in samples if 0 <= s.t <= opts.duration + 0.5] or samples
    first, end, last = load[0], load[-1], samples[-1]
    span = max(1e-9, end.t - first.t)
    sending = [s for s in samples if 0 <= s.t <= load_s + 0.5] or samples
    sent_metrics = sum(d[0] for d in done.values())
    sent_images = sum(d[1] for d in done.values())
    sent = sent_metrics + sent_images
    offered = sent / max(load_s, opts.duration)
    stored_rate = (sending[-1].stored - sending[0].stored) / max(1e-9, sending[-1].t - sending[0].t)
    cpu = {name: round(100 * (end.cpu.get(name, 0) - first.cpu.get(name, 0)) / span) for name in end.cpu}
    busy = (end.machine[0] - first.machine[0]) / max(1e-9, end.machine[1] - first.machine[1])
    target = sum(opts.plan.offered_per_second())
    run = {
        "hubs": k,
        "offered_msgs_per_s": round(offered),  # acknowledged by Kafka
        "stored_msgs_per_s": round(stored_rate),
        "load_s": round(load_s, 1),
        "sent": {"metrics": sent_metrics, "images": sent_images, "unsent": sum(d[2] for d in done.values())},
        "stored": rows,
        "rows_equal_sent": rows["metrics"] == rows["distinct_metrics"] == sent_metrics
        and rows["images"] == rows["distinct_images"] == sent_images,
        "rows_not_stored_yet": sent
        - rows["metrics"]
        - rows["images"],  # still on the topic when the drain ended
        "duplicates_on_topic": last.records - sent,
        "lag": {
            "max": max(s.lag for s in samples),
            "at_load_end": end.lag,
            "drained": last.lag == 0 and last.stored == sent,
            "drain_s": round(drain_s, 1),
            "over_time": [[round(s.t), s.lag] for s in samples],
        },
        "edge_to_store_s": {q: None if v is None else round(v, 3) for q, v in latency.items()},
        "views": {kind: _ms(times) for kind, times in probe.times.items()} | {"errors": probe.errors},
        "hub_rss_mb": [round(max(s.rss[i] for s in samples) / 2**20) for i in range(k)],
        "store_mb_per_hour": round(growth / opts.duration * 3600 / 2**20),
        "cpu_pct_of_one_core": cpu,
        "machine_busy_pct": round(100 * busy),
        "load_average": round(os.getloadavg()[0], 1),
        "generator_behind_s": round(max((d[3] for d in done.values()), default=0.0), 1),
    }
    run["saturated_first"], run["saturation_note"] = saturation(run, target, opts.workers)
    return run


def saturation(run: dict[str, Any], target: float, workers: int) -> tuple[str, str]:
    """What gave out first: generator, hub CPU, PostgreSQL or broker (or none), and why we say so.

    A hub is one Python process: its ceiling is one core. The generator's is one core per worker.
    PostgreSQL and the broker can use every core. The busiest against its ceiling is named, once
    the hubs fell behind (lag still growing at the end of the load) or the generator offered less
    than asked.
    """
    cpu, cores = run["cpu_pct_of_one_core"], _cores()
    hub = max((v for n, v in cpu.items() if n.startswith("hub") and n != "hub"), default=0)
    use = {
        "hub CPU": hub / 100,
        "generator": cpu.get("generator", 0) / 100 / workers,
        "PostgreSQL": cpu.get("postgres", 0) / 100 / cores,
        "broker": cpu.get("broker", 0) / 100 / cores,
    }
    busiest = max(use, key=lambda n: use[n])
    shares = ", ".join(f"{n} {v:.0%}" for n, v in sorted(use.items(), key=lambda kv: -kv[1]))
    ours = sum(v for n, v in cpu.items() if n in ("hub", "api", "postgres", "broker", "generator"))
    machine = (
        f"machine {run['machine_busy_pct']}% busy over {cores} cores, load average {run.get('load_average')}; "
        f"this run's processes used {ours}% of one core"
    )
    if run["machine_busy_pct"] >= 95 and ours < 0.8 * 100 * cores:
        machine += " (the rest went to other work on this shared machine)"
    if run["offered_msgs_per_s"] < 0.95 * target or run["generator_behind_s"] > 2:
        return (
            "generator",
            f"offered {run['offered_msgs_per_s']:,}/s of {target:,.0f}/s asked; {shares}; {machine}",
        )
    behind = run["lag"]["at_load_end"] > max(100, 2 * run["offered_msgs_per_s"])
    if not behind:
        return "none", f"the hubs kept up; busiest against its ceiling: {shares}; {machine}"
    return busiest, f"lag {run['lag']['at_load_end']:,} at the load's end; {shares}; {machine}"


def _cores() -> int:
    return os.cpu_count() or 1


def _rows_cell(run: dict[str, Any]) -> str:
    if run["rows_equal_sent"]:
        return "yes"
    left = run.get("rows_not_stored_yet", 0)
    return f"not drained ({left:,} on the topic)" if left > 0 and not run["lag"]["drained"] else "NO"


def table(result: dict[str, Any]) -> str:
    """One line per run."""
    head = ("hubs", "offered/s", "stored/s", "max lag", "drained", "e2s p50", "e2s p99", "/cameras p50/p99 ms",
            "camera opened p50/p99 ms", "views p50/p99 ms", "summary p99 ms", "hub RSS MB", "store MB/h",
            "rows=sent", "saturated first")  # fmt: skip
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in result["runs"]:
        v = r["views"]
        cells = (
            r["hubs"], f"{r['offered_msgs_per_s']:,}", f"{r['stored_msgs_per_s']:,}", f"{r['lag']['max']:,}",
            "yes" if r["lag"]["drained"] else f"no ({r['lag']['drain_s']} s)",
            f"{r['edge_to_store_s']['p50']} s", f"{r['edge_to_store_s']['p99']} s",
            f"{v['cameras']['p50_ms']}/{v['cameras']['p99_ms']}", f"{v['camera']['p50_ms']}/{v['camera']['p99_ms']}",
            f"{v['views']['p50_ms']}/{v['views']['p99_ms']}",
            v["summary"]["p99_ms"], "/".join(map(str, r["hub_rss_mb"])), f"{r['store_mb_per_hour']:,}",
            _rows_cell(r), r["saturated_first"],
        )  # fmt: skip
        lines.append(" | ".join(map(str, cells)))
    nice = result.get("ingest_nice", 0)
    notes = [
        f"views asked of {result.get('views_from', 'the ingesting hubs')}"
        + (f"; the ingesting hubs at nice {nice}" if nice else "")
    ] + [
        f"{r['hubs']} hub(s): CPU % of one core {r['cpu_pct_of_one_core']}; {r['saturation_note']}"
        for r in result["runs"]
    ]
    return "\n".join(lines + [""] + notes)
