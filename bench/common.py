"""Helpers the benchmarks share: one-core limits, interleaved repeats, tables, the JSON last line.

The machines these run on are shared and noisy, so every figure is the median
of several repeats, interleaved with the reference design's in the same run.
A benchmark sets ``OMP_NUM_THREADS=1`` itself, before it imports NumPy (OpenMP
reads it only when it loads); ``OPENBLAS_CORETYPE`` is left as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Timing",
    "bench_model",
    "broker",
    "children_cpu",
    "clock",
    "interleave",
    "limit_to_one_thread",
    "median_run",
    "print_json",
    "profile",
    "spread",
    "table",
]


def limit_to_one_thread() -> str:
    """Limit BLAS/OpenMP pools of this process to one thread; return a line that says so.

    Per-core figures must not borrow a second core through a BLAS pool;
    threadpoolctl covers pools already loaded, ``OMP_NUM_THREADS`` later ones.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(1)
    pools = sorted({f"{p['internal_api']}={p['num_threads']}" for p in threadpool_info()})
    coretype = os.environ.get("OPENBLAS_CORETYPE", "unset")
    return (
        f"one core: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, threadpoolctl limits "
        f"{', '.join(pools) or 'no pools'}; OPENBLAS_CORETYPE {coretype} (left as is)"
    )


@dataclass(frozen=True, slots=True)
class Timing:
    """One measurement: how many items, how long on the wall clock and on this process's CPUs."""

    items: int
    wall: float
    cpu: float
    extra: dict[str, float]

    @property
    def rate(self) -> float:
        return self.items / self.wall if self.wall > 0 else 0.0


def interleave(runs: dict[str, Callable[[], Timing]], repeats: int) -> dict[str, list[Timing]]:
    """Each repeat runs every measurement once, in order; returns the timings per measurement.

    On a shared machine the neighbours come and go: interleaving lets a
    measurement and its baseline see the same neighbours, so their ratio is
    fairer than that of two blocks of runs taken minutes apart.
    """
    out: dict[str, list[Timing]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            out[name].append(run())
    return out


def median_run(runs: Sequence[Timing]) -> Timing:
    """The run with the median rate, kept whole so its per-stage figures belong to its rate."""
    return sorted(runs, key=lambda t: t.rate)[(len(runs) - 1) // 2]


def spread(runs: Sequence[Timing]) -> str:
    """min-max of the rates, so a reader sees how noisy the machine was."""
    rates = [t.rate for t in runs]
    return f"{min(rates):,.0f}-{max(rates):,.0f}"


def children_cpu() -> float:
    """CPU seconds used so far by this process's live multiprocessing children (Linux /proc).

    Worker CPU over wall time says how many cores a parallel run really got
    on a machine that others share.
    """
    import multiprocessing

    total = 0
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def clock() -> tuple[float, float]:
    """(wall, process CPU) now; CPU time shows how much of a slow wall time was other tenants."""
    return time.perf_counter(), time.process_time()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (first column left, the rest right-aligned) that pastes into a README."""
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def profile(fn: Callable[..., Any], *args: Any, top: int = 20) -> None:
    """cProfile one call and print the ``top`` functions by own time: where a shortfall comes from."""
    import cProfile
    import pstats
    import sys

    prof = cProfile.Profile()
    prof.runcall(fn, *args)
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def print_json(result: dict[str, Any]) -> None:
    """The last line of stdout: one JSON object that scripts and CI can parse."""
    print(json.dumps(result, sort_keys=False), flush=True)


def bench_model(path: Path | None, tmp: Path) -> Path:
    """The model every side of a benchmark uses: ``path``, or one trained now on bundled-train.

    Training once per run (about 15 s) keeps a benchmark runnable on a clean
    clone; passing ``--model`` skips it.
    """
    from edgemnist.data import load_bundled
    from edgemnist.model import evaluate, load_model, save_model, train_model

    if path is None:
        print("training a model on bundled-train (edgemnist.model.train_model) ...", flush=True)
        est = train_model(load_bundled("train"), progress=False)
        path = save_model(
            est, tmp, dataset="bundled", n_train=4000, n_test=1000, accuracy=0, uncertain_share=0
        )[0]
    model = load_model(path)
    q = evaluate(model, load_bundled("stream"))
    print(
        f"model {model.version}: held-out accuracy {q['accuracy']:.3f}, uncertain {q['uncertain_share']:.1%}"
    )
    return model.path or path


@contextlib.contextmanager
def broker(bootstrap: str | None) -> Iterator[tuple[str, str]]:
    """(bootstrap servers, description): the given broker, else a local Tansu for this run."""
    if bootstrap:
        yield bootstrap, f"Kafka at {bootstrap} (as given)"
        return
    from edgemnist_demo.broker import LocalBroker

    with LocalBroker() as local:
        yield local.bootstrap_servers, f"local Tansu broker (memory) on {local.bootstrap_servers}"
