"""Reading the topic directly, as the reference's testing-kafka notebook does: no hub involved.

Prints each metrics window (per-camera certain/uncertain counts, latency
stats, the derived rates of docs/reference.md "Derived figures") and, when asked, each uncertain
image beside its prepared image with the ten scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from edgemnist.errors import SchemaError
from edgemnist.wire.messages import MetricsMessage, Origin, UncertainImage, parse_message
from metro_app.views.figures import derived_rates

__all__ = ["format_metrics", "read_topic", "show_topic"]


def format_metrics(m: MetricsMessage | Mapping[str, Any]) -> str:
    """A metrics message as the lines the reference's debug notebook prints."""
    m = MetricsMessage.of(m)
    lines = [f"metrics window at {m.timestamp}"]
    for cam, c in m.camera_metrics.items():
        lines.append(
            f"  camera {cam}: certain {sum(c.certain)} {list(c.certain[:10])}, "
            f"uncertain {c.n_uncertain} {list(c.uncertain[:10])}"
        )
    for stage in ("prep", "predict"):
        s = m.latency(stage)
        p = ", ".join(f"{v * 1000:.2f}" for v in s.percentiles)
        lines.append(
            f"  {stage} ms: min {s.min * 1000:.2f} mean {s.mean * 1000:.2f} max {s.max * 1000:.2f} "
            f"std {s.std * 1000:.2f} p50/75/90/99 {p}"
        )
    r = derived_rates(m)

    def f(v: float | None, scale: float = 1.0) -> str:
        return "n/a" if v is None else f"{v * scale:.3f}"

    lines.append(
        f"  image rate {f(r.image_rate)}/s, score rate per channel {f(r.score_rate)}/s, "
        f"ingest overhead {f(r.ingest_overhead, 1000)} ms, queueing overhead {f(r.queueing_overhead, 1000)} ms"
    )
    return "\n".join(lines)


def read_topic(
    bootstrap_servers: str, topic: str, *, from_beginning: bool = False, timeout: float = 60.0
) -> Iterator[MetricsMessage | UncertainImage]:
    """Yield the valid messages of either kind until `timeout` seconds pass; the caller may stop early."""
    from edgemnist.kafka import make_consumer
    from edgemnist.kafka.settings import resolve

    settings = resolve(bootstrap_servers=bootstrap_servers)
    consumer = make_consumer(
        settings, topic, None, auto_offset_reset="earliest" if from_beginning else "latest"
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    try:
                        yield parse_message(rec.value, Origin(rec.topic, rec.partition, rec.offset))
                    except SchemaError as exc:
                        print(f"skipping a record that is not a valid message: {exc}")
    finally:
        consumer.close()


def show_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    max_windows: int = 5,
    show_images: bool = False,
    max_images: int = 3,
    timeout: float = 60.0,
    from_beginning: bool = False,
    display: Callable[[Any], None] | None = None,
) -> dict[str, int]:
    """Print metrics windows (and show uncertain images) until `max_windows` or `timeout`; return counts."""
    from IPython.display import Image
    from IPython.display import display as ipython_display

    from metro_app.dashboard import charts

    show = display or ipython_display

    seen = {"windows": 0, "images": 0, "shown": 0}
    cameras: set[str] = set()
    for msg in read_topic(bootstrap_servers, topic, from_beginning=from_beginning, timeout=timeout):
        if isinstance(msg, MetricsMessage):
            seen["windows"] += 1
            cameras.update(msg.camera_metrics)
            print(format_metrics(msg), flush=True)
        else:
            seen["images"] += 1
            if show_images and seen["shown"] < max_images:
                seen["shown"] += 1
                print(
                    f"uncertain image from {msg.camera} #{msg.count}: predicted {msg.result_class} "
                    f"({msg.result_probability:.2f}); scores {[round(p, 3) for p in msg.predictions]}"
                )
                row = {
                    "frame": msg.image_bytes(),
                    "prepared": msg.prepared_image,
                    "predicted": msg.result_class,
                    "probability": msg.result_probability,
                    "true_class": msg.true_class,
                }
                show(Image(data=charts.grid_png([row]), format="png"))
                show(Image(data=charts.scores_png(list(msg.predictions), msg.result_class), format="png"))
        if seen["windows"] >= max_windows and (not show_images or seen["shown"] >= max_images):
            break
    print(f"read {seen['windows']} metrics windows and {seen['images']} uncertain images "
          f"from cameras: {', '.join(sorted(cameras))}")  # fmt: skip
    return seen
