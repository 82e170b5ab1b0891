"""Runs a topology's stage specs in this process, with streamsx's operator semantics.

Not IBM Streams, but what its Python operators do to our callables: each is pickled and
unpickled (a separate copy per channel of a parallel region), entered before the first tuple
and exited at shutdown; a map drops a None result, a flat_map submits each item of its
result, a for_each consumes. A parallel region's merge does not keep order in Streams, so
here it hands every pair of tuples on swapped.
"""

from __future__ import annotations

import itertools
import pickle
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from edge_app.pipeline import StageSpec

__all__ = ["run_specs"]


def _copy(stage: Any) -> Any:
    return pickle.loads(pickle.dumps(stage))


def run_specs(specs: Sequence[StageSpec]) -> dict[str, int]:
    """Run the specs' source to its end through every operator; returns tuples submitted per operator."""
    downstream: dict[str, list[StageSpec]] = defaultdict(list)
    for before, spec in itertools.pairwise(specs):
        for up in spec.inputs or (before.name,):
            downstream[up].append(spec)
    channels = {s.name: [_copy(s.stage) for _ in range(max(1, s.parallel))] for s in specs}
    turn = {s.name: itertools.cycle(range(len(channels[s.name]))) for s in specs}
    held: dict[str, Any] = {}  # a parallel region's tuple waiting for its successor
    counts: dict[str, int] = defaultdict(int)

    def submit(name: str, value: Any) -> None:
        counts[name] += 1
        for spec in downstream[name]:
            process(spec, value)

    def emit(spec: StageSpec, value: Any) -> None:
        if spec.parallel <= 1:
            submit(spec.name, value)
        elif spec.name in held:
            submit(spec.name, value)
            submit(spec.name, held.pop(spec.name))
        else:
            held[spec.name] = value

    def process(spec: StageSpec, value: Any) -> None:
        stage = channels[spec.name][next(turn[spec.name])]
        if spec.kind == "map":
            out = stage(value)
            if out is not None:
                emit(spec, out)
        elif spec.kind == "flat_map":
            for item in stage(value) or ():
                emit(spec, item)
        elif spec.kind == "for_each":
            stage(value)
        else:
            raise ValueError(f"operator {spec.name}: kind {spec.kind!r} is not supported here")

    every = [stage for s in specs for stage in channels[s.name]]
    entered: list[Any] = []
    try:
        for stage in every:
            if hasattr(stage, "__enter__"):
                stage.__enter__()
                entered.append(stage)
        [source] = [s for s in specs if s.kind == "source"]
        for value in channels[source.name][0]():
            if value is not None:
                submit(source.name, value)
        for name in [s.name for s in specs if s.name in held]:  # the region's last tuple
            submit(name, held.pop(name))
    finally:
        for stage in entered:
            stage.__exit__(None, None, None)
    return dict(counts)
