"""The edge as a streamsx Topology, for users who own an IBM Streams / Cloud Pak for Data instance.

The operators are `edge_app.pipeline.edge_stages(...).specs()`, the same stage objects our
runner uses, wired in the order and shape the specs give:
ImageSource -> Enrich -> (parallel) Score -> UncertainFilter -> Outbox -> Kafka
                                          \\-> MetricsWindow  -/
`edge-app build --target streams-archive --out DIR` writes the build archive.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_app.pipeline import StageSpec, edge_stages
from edge_app.settings import EdgeSettings

__all__ = ["build_topology", "build_archive", "wire"]


def wire(topo: Any, specs: Sequence[StageSpec]) -> dict[str, Any]:
    """Add the operators of `specs` to a streamsx Topology; returns each operator's output stream."""
    streams: dict[str, Any] = {}
    previous: Any = None
    for spec in specs:
        if spec.kind == "source":
            out = topo.source(spec.stage, name=spec.name)
        else:
            ups = [streams[n] for n in spec.inputs] if spec.inputs else [previous]
            up = ups[0].union(set(ups[1:])) if len(ups) > 1 else ups[0]
            if spec.parallel > 1:
                up = up.parallel(spec.parallel)
            out = getattr(up, spec.kind)(spec.stage, name=spec.name)
            if spec.parallel > 1:
                out = out.end_parallel()
        streams[spec.name] = previous = out
    return streams


def build_topology(
    settings: EdgeSettings,
    name: str = "EdgeCameraClassifier",
    bootstrap_servers: str | None = None,
    credentials: str | None = None,
) -> Any:
    """The streamsx Topology of one edge camera; Kafka is resolved when the job's Outbox operator starts."""
    from streamsx.topology.topology import Topology

    topo = Topology(name)
    stages = edge_stages(settings, bootstrap_servers=bootstrap_servers, credentials=credentials)
    wire(topo, stages.specs())
    return topo


def build_archive(topo: Any, out_dir: Path) -> Path:
    """Build a Streams build archive (streamsx BUILD_ARCHIVE context; needs Java) into `out_dir`."""
    from edgemnist.streams import build_archive as _build

    return _build(topo, out_dir)
