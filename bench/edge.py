"""Edge throughput: our micro-batch pipeline against the reference design, same model, same frames.

On one core (one BLAS/OpenMP thread), over the 1,000 bundled stream digits as camera PNGs:
  pipeline   frame bytes -> prepare -> score -> uncertain filter (messages and their
             JSON) -> metrics window, micro-batches of 256, no Kafka;
  reference  the reference design per image (bench/reference.py): per-image decode, a
             Python-loop centre of mass, one predict_proba per image, JSON if uncertain;
  kafka      the whole edge, run_edge -> SQLite outbox -> Sender -> Kafka (acks=all),
             timed until the outbox is drained; a normal camera, then a Test camera
             that sends every image. The broker is a separate process.
Then run_edge with a counting null sink at parallelism 1 and N (N worker processes).
Each figure is the median of --repeats runs, interleaved with its baseline's; the last
line of stdout is JSON.

    .venv/bin/python bench/edge.py [--quick] [--model PATH] [--parallelism N] [--profile]
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before NumPy loads OpenMP; threadpoolctl limits the rest

import argparse
import base64
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import common
import numpy as np
from common import Timing, clock, median_run
from reference import reference_prepare

from edge_app.outbox import Outbox
from edge_app.runner import OutboxSink, run_edge
from edge_app.sender import Sender
from edge_app.settings import EdgeSettings
from edge_app.stages import Enricher, ImageSource, MetricsWindow, Scorer, UncertainFilter
from edgemnist.data import load_frames
from edgemnist.model import CONFIDENCE, load_model
from edgemnist.wire.messages import EdgeConfig, MetricsMessage, UncertainImage, utc_timestamp

BATCH = 256
STAGES = ("decode+prep", "predict", "filter+serialise", "source, enrich, loop")
LEGEND = (
    "img/CPU-s: per second of this process's CPU time.\n"
    "CPU got: CPU time / wall time, in cores (below 1: neighbours on this shared machine took the rest)."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer passes and frames (about a minute)")
    p.add_argument("--model", type=Path, help="an existing .skops model or directory (default: train one)")
    p.add_argument(
        "--repeats", type=int, help="runs per figure, at least 3; the median is reported (default 5, quick 3)"
    )
    p.add_argument("--parallelism", type=int, default=2, help="workers to compare with 1 (1 = skip)")
    p.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="Kafka to use [env: KAFKA_BOOTSTRAP_SERVERS]; default: a local Tansu broker",
    )
    p.add_argument("--no-kafka", action="store_true", help="skip the end-to-end runs with Kafka")
    p.add_argument("--profile", action="store_true", help="also cProfile one pipeline run, top 20")
    args = p.parse_args(argv)
    args.repeats = max(3, args.repeats or (3 if args.quick else 5))
    args.passes, args.ref_passes, args.parallel_passes = (3, 1, 10) if args.quick else (10, 2, 20)
    return args


def pipeline_run(model_path: Path, passes: int) -> Timing:
    """Our stages wired as run_edge wires them, minus the sink, with per-stage times.

    Prep and predict times are the stages' own (batch time / batch size, as in
    the metrics messages); filter+serialise is the filter, the JSON of what it
    picked and the metrics window; the rest is source, enrich and the loop.
    """
    config = EdgeConfig(repeat=passes, confidence=CONFIDENCE, metrics_duration=10.0)
    window, pick = MetricsWindow(10.0, config, CONFIDENCE), UncertainFilter(CONFIDENCE)
    spent = dict.fromkeys(STAGES, 0.0)
    frames = 0
    source = ImageSource("bundled", passes, batch_size=BATCH)
    with source, Enricher("Bench") as enrich, Scorer(model_path) as score:
        wall, cpu = clock()
        for batch in map(enrich, source()):
            scored = score(batch.frames)
            t = time.perf_counter()
            window.add(scored)
            for message in pick(batch, scored):
                message.to_json()
            if window.due(time.time()):
                window.close(time.time(), batch.camera, batch.run_id, None, scored.model_version).to_json()
            spent["filter+serialise"] += time.perf_counter() - t
            spent["decode+prep"] += scored.prep_time * len(batch)
            spent["predict"] += scored.predict_time * len(scored.index)
            frames += len(batch)
        window.close(time.time(), enrich.camera, enrich.run_id, None, score.model_version)
        end_wall, end_cpu = clock()
    spent["source, enrich, loop"] = (end_wall - wall) - sum(spent.values())
    return Timing(frames, end_wall - wall, end_cpu - cpu, spent)


def reference_run(estimator: object, passes: int) -> Timing:
    """The reference design per image, cut at the same stage boundaries as pipeline_run."""
    frames = load_frames("bundled").frames
    spent = dict.fromkeys(STAGES, 0.0)
    counts = np.zeros((2, 10), dtype=np.int64)  # the reference's window: certain/uncertain per digit
    wall, cpu = clock()
    for n, frame in enumerate(frames * passes):
        t0 = time.perf_counter()
        prepared = reference_prepare(frame)
        t1 = time.perf_counter()
        probs = estimator.predict_proba(prepared.reshape(1, -1))[0]  # type: ignore[attr-defined]
        t2 = time.perf_counter()
        uncertain = probs.max() <= CONFIDENCE
        counts[int(uncertain), int(probs.argmax())] += 1
        if uncertain:
            b64, now = base64.b64encode(frame).decode("ascii"), utc_timestamp(time.time())
            preds, cls, top = tuple(probs.tolist()), int(probs.argmax()), float(probs.max())
            UncertainImage(n, b64, "Reference", now, prepared, t1 - t0, preds, cls, top, t2 - t1).to_json()
        spent["decode+prep"] += t1 - t0
        spent["predict"] += t2 - t1
        spent["filter+serialise"] += time.perf_counter() - t2
    end_wall, end_cpu = clock()
    spent["source, enrich, loop"] = (end_wall - wall) - sum(spent.values())
    return Timing(len(frames) * passes, end_wall - wall, end_cpu - cpu, spent)


def kafka_run(model: Path, outbox: Outbox, sender: Sender, topic: str, camera: str, passes: int) -> Timing:
    """The whole edge: images/s from start until Kafka has acknowledged everything."""
    settings = EdgeSettings(model=model, camera=camera, repeat=passes, topic=topic, batch_size=BATCH)
    wall, cpu = clock()
    stats = run_edge(settings, OutboxSink(outbox))
    if not sender.drain(timeout=300):
        raise RuntimeError(f"outbox not drained after 300 s: {outbox.pending} messages pending")
    end_wall, end_cpu = clock()
    msgs_per_s = (stats.uncertain_sent + stats.metrics_sent) / (end_wall - wall)  # all acked: drained
    return Timing(stats.frames, end_wall - wall, end_cpu - cpu, {"msgs_per_s": msgs_per_s})


def run_kafka(args: argparse.Namespace, model_path: Path, tmp: Path) -> dict[str, list[Timing]]:
    """Normal camera, then a Test camera, through one outbox and one Sender (connection kept warm)."""
    from edgemnist.kafka import EventProducer, ensure_topics
    from edgemnist.kafka.settings import resolve

    with common.broker(args.bootstrap_servers) as (bootstrap, where):
        print(f"Kafka: {where}", flush=True)
        kafka, topic = resolve(bootstrap_servers=bootstrap), f"bench-edge-{time.time_ns()}"
        ensure_topics(kafka, {topic: 1})
        with Outbox(tmp / "outbox.db") as box, Sender(box, topic, lambda: EventProducer(kafka)) as sender:
            kafka_run(model_path, box, sender, topic, "Test", 1)  # warm-up: connect, fetch metadata
            cams = {"kafka": "Bench", "kafka_test_camera": "Test"}
            runs = {
                k: partial(kafka_run, model_path, box, sender, topic, c, args.passes) for k, c in cams.items()
            }
            return common.interleave(runs, args.repeats)


class NullSink:
    """A Sink that serialises messages as the real sinks do, then drops them.

    At each batch it notes (wall, main CPU, workers' CPU), so the rate leaves out
    worker start-up and pool shutdown and says how many cores the run really got.
    """

    def __init__(self) -> None:
        self.marks: list[tuple[float, float, float]] = []

    def put(self, messages: list, key: bytes) -> None:
        if not (len(messages) == 1 and isinstance(messages[0], MetricsMessage)):
            self.marks.append((*clock(), common.children_cpu()))
        for message in messages:
            message.to_json()

    def stats(self) -> None:
        return None


def parallel_run(model_path: Path, parallelism: int, passes: int) -> Timing:
    """run_edge at `parallelism` in steady state: from the first full batch scored to the last."""
    sink = NullSink()
    settings = EdgeSettings(model=model_path, camera="Bench", parallelism=parallelism, repeat=passes)
    full = run_edge(settings, sink).frames // settings.batch_size
    (w0, c0, k0), (w1, c1, k1) = sink.marks[0], sink.marks[full - 1]
    cores = (c1 - c0 + k1 - k0) / (w1 - w0)
    return Timing((full - 1) * settings.batch_size, w1 - w0, c1 - c0, {"cores": cores})


def throughput_table(runs: dict[str, list[Timing]], ref: Timing) -> str:
    labels = {
        "reference": ("reference design, per image", "1"),
        "pipeline": (f"pipeline, micro-batch {BATCH}, no Kafka", "1"),
        "kafka": ("edge + Kafka, normal camera", "1+broker"),
        "kafka_test_camera": ("edge + Kafka, Test camera (sends all)", "1+broker"),
    }
    rows = []
    for name, timings in runs.items():
        label, cores = labels.get(name, (f"run_edge, null sink, parallelism {name[9:]}", name[9:]))
        t = median_run(timings)
        par = name.startswith("parallel")
        got, per_cpu = (t.extra["cores"], "-") if par else (t.cpu / t.wall, f"{t.items / t.cpu:,.0f}")
        rows.append([label, cores, t.rate, common.spread(timings), per_cpu, got, f"{t.rate / ref.rate:.2f}"])
    heads = ["measurement", "cores", "images/s", "range", "img/CPU-s", "CPU got", "vs reference"]
    return common.table(heads, rows)


def stage_table(ours: Timing, ref: Timing) -> str:
    rows = []
    for stage in STAGES:
        a, b = ours.extra[stage] / ours.items * 1e6, ref.extra[stage] / ref.items * 1e6
        speedup = f"{b / a:.1f}x" if a > 0 else "-"
        rows.append([stage, a, f"{a * ours.rate / 1e6:.0%}", b, f"{b * ref.rate / 1e6:.0%}", speedup])
    return common.table(["stage (us/image)", "pipeline", "share", "reference", "share", "speed-up"], rows)


def parallel_line(runs: dict[str, list[Timing]], n: int) -> str:
    """The speed-up, with the cores each side really got: on a shared machine that bounds it."""
    one, many = median_run(runs["parallel_1"]), median_run(runs[f"parallel_{n}"])
    return (
        f"parallelism {n} vs 1 on {os.cpu_count()} shared cores: {many.rate / one.rate:.2f}x (steady state, "
        f"median runs); the run got {many.extra['cores']:.2f} cores at {n}, {one.extra['cores']:.2f} at 1; "
        f"at {n} its main process (source, filter, JSON) was busy {many.cpu / many.wall:.0%} of the time."
    )


def collect(args: argparse.Namespace, tmp: Path) -> dict[str, list[Timing]]:
    """Every measurement of this run, each interleaved with its baseline, in a fixed order."""
    model_path = common.bench_model(args.model, tmp)
    estimator = load_model(model_path).estimator
    one_core = {"reference": partial(reference_run, estimator, args.ref_passes)}
    one_core["pipeline"] = partial(pipeline_run, model_path, args.passes)
    runs = common.interleave(one_core, args.repeats)
    if not args.no_kafka:
        runs.update(run_kafka(args, model_path, tmp))
    if args.parallelism > 1:
        n, passes = args.parallelism, args.parallel_passes
        par = {f"parallel_{p}": partial(parallel_run, model_path, p, passes) for p in (1, n)}
        runs.update(common.interleave(par, args.repeats))
    if args.profile:
        print(f"\ncProfile of one pipeline run, {args.passes * 1000:,} images, top 20 by own time")
        common.profile(pipeline_run, model_path, args.passes)
    return runs


def summary(runs: dict[str, list[Timing]]) -> dict[str, object]:
    """The JSON line's figures; the first three are the ones the issue's targets are about."""
    t = {name: median_run(timings) for name, timings in runs.items()}
    ours, ref = t["pipeline"], t["reference"]
    result: dict[str, object] = {
        "pipeline_img_per_s": round(ours.rate),
        "reference_img_per_s": round(ref.rate),
    }
    result["ratio"] = round(ours.rate / ref.rate, 2)
    for key in ("kafka", "kafka_test_camera"):
        if key in t:
            result[f"{key}_img_per_s"] = round(t[key].rate)
            result[f"{key}_msgs_per_s"] = round(t[key].extra["msgs_per_s"])
    par = {k[9:]: v for k, v in t.items() if k.startswith("parallel")}
    if par:
        result["parallel_speedup"] = round(par[max(par, key=int)].rate / par["1"].rate, 2)
        result["parallel_img_per_s"] = {k: round(p.rate) for k, p in par.items()}
        result["parallel_cores_got"] = {k: round(p.extra["cores"], 2) for k, p in par.items()}
    return result | {
        "stages_us_per_image": {
            n: {s: round(t[n].extra[s] / t[n].items * 1e6, 1) for s in STAGES}
            for n in ("pipeline", "reference")
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(common.limit_to_one_thread(), f"| {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmpdir:
        runs = collect(args, Path(tmpdir))
    ours, ref = median_run(runs["pipeline"]), median_run(runs["reference"])
    per_run = (
        f"{ref.items:,} reference, {ours.items:,} pipeline and Kafka, {args.parallel_passes:,}k parallel"
    )
    print(f"\nimages/s: median of {args.repeats} interleaved runs, range min-max. Images per run: {per_run}.")
    print(f"{LEGEND}\n{throughput_table(runs, ref)}")
    print("\nwhere the time goes, one core, median run\n" + stage_table(ours, ref))
    if args.parallelism > 1:
        print("\n" + parallel_line(runs, args.parallelism))
    result = summary(runs) | {"repeats": args.repeats, "quick": args.quick, "blas_threads": 1}
    common.print_json(result | {"cores": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
