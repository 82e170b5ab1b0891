"""Safe rollout, measured: how fast a bad canary is rolled back, and what a shadow stage costs.

One figure per function, each returning a dict that goes under its own key of
the JSON last line (``rollback``, ``shadow``, ``shadow_throughput``; drift figures join as their own key):

- `shadow_figure`: a hub and two edge cameras streaming digits *without labels* at 250
  frames/s (an IDX file with no labels file; the canary's digits rotated 25 degrees).
  A confidently wrong model (1<->7 and 3<->8 swapped) and a model better on the rotation
  (trained on rotated digits too) are rolled out in shadow to the canary in turn; a
  labeller thread labels every disagreement the hub lists, at once, with its true digit.
  Measured: labelled disagreements at the verdict, and seconds from the shadow's
  publication to the verdict.
- `shadow_throughput`: the edge's stages (prepare, score, filter, window) over the bundled
  frames on one core with and without a shadow model, interleaved, median of the repeats.

- `rollback_figure`: a hub (`metro-app run`, its rollout watcher inside) and two
  edge cameras stream the bundled digits with 1 s metrics windows. Three times,
  a model trained on shuffled labels is imported (`metro_app.training.modelimport`) and
  rolled out to one canary camera; measured: seconds from the canary's
  publication (the broker's ack) to the rollback's publication, and to the
  canary camera's first window scored again by the model it ran before.
  Median of the three; the other camera must never run a bad model.

    .venv/bin/python bench/rollout.py [--bootstrap-servers HOST:PORT] [--repeats 3]

Without --bootstrap-servers it runs on the embedded Tansu broker. Prints a
table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import bench_model, broker, print_json, table  # noqa: E402
from bench.drift import measure  # noqa: E402
from edgemnist.data import Dataset, load_bundled  # noqa: E402
from edgemnist.model import load_model, save_model, train_model  # noqa: E402

CANARY, OTHER = "BenchCanary", "BenchOther"
WINDOWS = 3


def bad_model(out: Path, seed: int) -> Path:
    """A model trained on 600 digits with their labels shuffled: it has learnt nothing about digits."""
    train = load_bundled("train")
    labels = np.random.default_rng(seed).permutation(train.labels[:600])
    est = train_model(Dataset("shuffled", train.images[:600], labels), seed=seed, progress=False)
    return save_model(est, out, dataset="shuffled", n_train=600, n_test=0, accuracy=0, uncertain_share=0)[0]


def _edge(
    camera: str,
    bootstrap: str,
    topic: str,
    model: Path,
    tmp: Path,
    *,
    source: str = "bundled",
    distort: str = "",
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "edge_app.cli", "run", "--camera", camera, "--source", source, "--repeat", "0",
        "--delay", "0.004", "--metrics-duration", "1", "--bootstrap-servers", bootstrap, "--topic", topic,
        "--models-topic", f"{topic}.models", "--model", str(model), "--outbox", str(tmp / f"{camera}.db"),
    ]  # fmt: skip
    if distort:
        cmd += ["--distort", distort]
    env = {**os.environ, "EDGE_MNIST_STATE_DIR": str(tmp / f"state-{camera}-{topic}")}
    with open(tmp / f"edge-{camera}.log", "wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _versions(hub: Any, camera: str, after: int = 0) -> list[tuple[int, str]]:
    items = hub.client.fetch_all("ClassificationMetrics", after=after)
    return [
        (it["seq"], it["tuple"]["model_version"]) for it in items if camera in it["tuple"]["camera_metrics"]
    ]


def rollback_figure(bootstrap: str, model: Path, tmp: Path, repeats: int) -> dict[str, Any]:
    """Seconds from a bad canary's publication to its rollback, and to the camera back on its model."""
    from metro_app.rollout.policy import Policy
    from metro_app.rollout.watcher import register_rollout, wait_for
    from metro_app.store import Store
    from metro_app.store.rollouts import RolloutBook
    from metro_app.testing import HubProcess, wait_until
    from metro_app.training.modelimport import import_model
    from metro_app.training.retrain import RetrainSettings

    topic = f"bench-rollout-{time.time_ns()}"
    url = f"sqlite:///{tmp}/hub.db"
    bad = [bad_model(tmp / f"bad-{k}", seed=k) for k in range(repeats)]
    initial = load_model(model).version
    host = socket.gethostname()
    canary, other = f"{CANARY}-{host}", f"{OTHER}-{host}"
    runs = []
    with HubProcess(bootstrap, topic, url, tmp / "hub.log", extra=["--model", str(model)]) as hub:
        edges = [_edge(c, bootstrap, topic, model, tmp) for c in (CANARY, OTHER)]
        store = Store(url)
        try:
            wait_until(
                lambda: len(_versions(hub, canary)) >= 4 and _versions(hub, other),
                180,
                "windows from both cameras",
            )
            for path in bad:
                version = import_model(store, path, RetrainSettings(model=str(model)))["version"]
                policy = Policy(windows=WINDOWS, timeout=120)
                r = register_rollout(store, version, CANARY, policy, "bench/rollout.py")
                done = wait_for(store, r["rollout"], 180, poll=0.2)
                assert done["state"] == "rolled_back", done
                mark = RolloutBook(store).last_metric_id()
                wait_until(
                    lambda m=mark: any(v == initial for _, v in _versions(hub, canary, m)), 60, "canary back"
                )
                back_at = time.time()
                started = _epoch(done["started"])
                runs.append({
                    "version": version,
                    "to_rollback_s": done["seconds"],
                    "to_camera_back_s": round(back_at - started, 3),
                    "windows_judged": done["figures"][canary]["windows"],
                    "accuracy": done["figures"][canary]["accuracy"],
                })  # fmt: skip
            leaked = {v for _, v in _versions(hub, other)} - {initial}
        finally:
            store.close()
            for proc in edges:
                proc.terminate()
            for proc in edges:
                proc.wait(timeout=30)
    return {
        "median_to_rollback_s": statistics.median(r["to_rollback_s"] for r in runs),
        "median_to_camera_back_s": statistics.median(r["to_camera_back_s"] for r in runs),
        "windows": WINDOWS,
        "metrics_duration_s": 1,
        "other_camera_ran_bad_model": sorted(leaked),
        "runs": runs,
    }


def _write_idx(path: Path, images: np.ndarray) -> Path:
    n, h, w = images.shape
    path.write_bytes(
        b"".join(v.to_bytes(4, "big") for v in (2051, n, h, w)) + images.astype(np.uint8).tobytes()
    )
    return path


def swapped_model(out: Path) -> Path:
    """Trained with 1<->7 and 3<->8 swapped: sure of itself, wrong on four classes."""
    train = load_bundled("train")
    swap = np.arange(10)
    swap[[1, 7, 3, 8]] = [7, 1, 8, 3]
    est = train_model(Dataset("swapped", train.images, swap[train.labels]), seed=3, progress=False)
    return save_model(
        est, out, dataset="swapped", n_train=len(train), n_test=0, accuracy=0, uncertain_share=0
    )[0]


def drift_model(out: Path, distort: str) -> Path:
    """Trained on the digits and the same digits distorted as the canary's are."""
    from edgemnist.distort import parse_distortion

    train = load_bundled("train")
    images = np.concatenate([train.images, parse_distortion(distort).apply(train.images)])
    data = Dataset("with-drift", images, np.concatenate([train.labels, train.labels]))
    est = train_model(data, seed=3, progress=False)
    return save_model(
        est, out, dataset=data.name, n_train=len(data), n_test=0, accuracy=0, uncertain_share=0
    )[0]


def shadow_figure(bootstrap: str, model: Path, tmp: Path) -> dict[str, Any]:
    """Labelled disagreements and seconds a shadow stage needs to decide, on cameras without labels."""
    import threading

    from metro_app.rollout.policy import Policy
    from metro_app.rollout.watcher import register_rollout
    from metro_app.store import Store
    from metro_app.store.rollouts import RolloutBook
    from metro_app.testing import HubProcess, wait_until
    from metro_app.training.modelimport import import_model
    from metro_app.training.retrain import RetrainSettings

    distort = "rotate:25"
    stream = load_bundled("stream")
    source = f"mnist-idx:{_write_idx(tmp / 'stream-images-idx3-ubyte', stream.images)}"
    candidates = {"confidently wrong (1<->7, 3<->8 swapped)": swapped_model(tmp / "swapped"),
                  "better on the drift (trained on rotated digits too)": drift_model(tmp / "drift", distort)}  # fmt: skip
    topic = f"bench-shadow-{time.time_ns()}"
    url = f"sqlite:///{tmp}/shadow-hub.db"
    host = socket.gethostname()
    out: dict[str, Any] = {"frames_per_s": 250, "canary_distortion": distort, "runs": {}}
    with HubProcess(bootstrap, topic, url, tmp / "shadow-hub.log", extra=["--model", str(model)]) as hub:
        edges = [
            _edge(CANARY, bootstrap, topic, model, tmp, source=source, distort=distort),
            _edge(OTHER, bootstrap, topic, model, tmp, source=source),
        ]
        store = Store(url)
        try:
            wait_until(lambda: len(_versions(hub, f"{CANARY}-{host}")) >= 4, 180, "windows from the canary")
            for name, path in candidates.items():
                version = import_model(store, path, RetrainSettings(model=str(model)))["version"]
                r = register_rollout(
                    store, version, CANARY, Policy(windows=WINDOWS, timeout=300), "bench/rollout.py"
                )
                stop, labelled = threading.Event(), set[str]()

                def label(
                    rid: int = r["rollout"], stop: threading.Event = stop, labelled: set = labelled
                ) -> None:
                    while not stop.is_set():
                        for item in hub.client.disagreements(rid, max=1000)["items"]:
                            if item["image_id"] not in labelled:
                                frame = int(item["image_id"].rsplit("/", 1)[1])
                                hub.client.add_label(
                                    item["image_id"],
                                    str(int(stream.labels[frame % len(stream.labels)])),
                                    "bench",
                                )
                                labelled.add(item["image_id"])
                        stop.wait(0.2)

                labeller = threading.Thread(target=label, daemon=True)
                labeller.start()
                book = RolloutBook(store)
                wait_until(
                    lambda rid=r["rollout"], book=book: _state(book, rid) not in ("pending", "shadow"),
                    400,
                    "verdict",
                )
                decided_at = time.time()
                stop.set()
                labeller.join(10)
                done = book.get(r["rollout"])
                sh = done["shadow"]
                out["runs"][name] = {
                    "verdict": "promoted from shadow"
                    if done["state"] in ("canary", "promoted")
                    else done["state"],
                    "labelled_disagreements": sh["candidate_right"]
                    + sh["serving_right"]
                    + sh.get("neither_right", 0),
                    "candidate_right": sh["candidate_right"],
                    "serving_right": sh["serving_right"],
                    "p_value": sh["p_value"],
                    "agreement": round(sh["agree"] / sh["images"], 4) if sh["images"] else None,
                    "seconds_to_verdict": round(decided_at - float(sh["started"]), 1),
                    "reason": done["reason"],
                }
                wait_until(lambda rid=r["rollout"], book=book: _state(book, rid) in ("promoted", "rolled_back", "failed"),
                           400, "rollout over")  # fmt: skip
        finally:
            store.close()
            for proc in edges:
                proc.terminate()
            for proc in edges:
                proc.wait(timeout=30)
    return out


def _deployment_keys(tmp: Path) -> None:
    """One key pair, as a deployment has: the hub signs with it, every edge trusts it (environment,
    inherited by the processes started here). Without it the edges, whose state directories are their
    own, would refuse every published model and the rollouts would measure refusals."""
    from edgemnist.signing import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, init_keys

    keys = tmp / "keys"
    init_keys(keys)
    os.environ["EDGE_MNIST_SIGNING_KEY"] = str(keys / PRIVATE_KEY_FILE)
    os.environ["EDGE_MNIST_TRUSTED_KEYS"] = str(keys / PUBLIC_KEY_FILE)


def _state(book: Any, rollout_id: int) -> str:
    return str((book.get(rollout_id) or {}).get("state"))


def shadow_throughput(model: Path, passes: int, repeats: int) -> dict[str, Any]:
    """Edge images per CPU-second with and without a shadow model (one core, micro-batches of 256)."""
    from bench.common import Timing, clock, interleave, limit_to_one_thread, median_run
    from edge_app.stages import Enricher, ImageSource, MetricsWindow, Scorer, UncertainFilter
    from edgemnist.model import CONFIDENCE
    from edgemnist.wire.messages import EdgeConfig

    limit_to_one_thread()
    shadow = load_model(model)

    def run(with_shadow: bool) -> Timing:
        config = EdgeConfig(repeat=passes, confidence=CONFIDENCE, metrics_duration=10.0)
        window, pick = MetricsWindow(10.0, config, CONFIDENCE), UncertainFilter(CONFIDENCE)
        frames = 0
        with (
            ImageSource("bundled", passes, batch_size=256) as source,
            Enricher("Bench") as enrich,
            Scorer(model) as score,
        ):
            if with_shadow:
                score.shadow_swap(shadow)
            wall, cpu = clock()
            for batch in map(enrich, source()):
                scored = score(batch.frames)
                window.add(scored)
                for message in pick(batch, scored):
                    message.to_json()
                frames += len(batch)
            end_wall, end_cpu = clock()
        return Timing(frames, end_wall - wall, end_cpu - cpu, {})

    runs = interleave({"without": lambda: run(False), "with shadow": lambda: run(True)}, repeats)
    med = {k: median_run(v) for k, v in runs.items()}
    per_cpu = {k: t.items / t.cpu for k, t in med.items()}
    return {
        "images_per_cpu_s": {k: round(v) for k, v in per_cpu.items()},
        "slowdown": round(per_cpu["without"] / per_cpu["with shadow"], 2),
        "passes": passes,
        "repeats": repeats,
    }


def _epoch(iso: str) -> float:
    from edgemnist.wire.messages import parse_timestamp

    return parse_timestamp(iso).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", help="a Kafka to use (default: the embedded Tansu broker)")
    parser.add_argument("--model", type=Path, help="the fleet's model (default: trained now)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer drift runs and windows")
    parser.add_argument("--shadow-only", action="store_true", help="only the shadow figures")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-rollout-") as d,
        broker(args.bootstrap_servers) as (bootstrap, desc),
    ):
        tmp = Path(d)
        _deployment_keys(tmp)
        model = bench_model(args.model, tmp)
        print(f"broker: {desc}")
        result["broker"] = desc
        if not args.shadow_only:
            result["rollback"] = rollback_figure(bootstrap, model, tmp, args.repeats)
        result["shadow"] = shadow_figure(bootstrap, model, tmp)
        result["shadow_throughput"] = shadow_throughput(model, 2 if args.quick else 5, args.repeats)
    sh = result["shadow"]
    print(table(
        ["candidate in shadow (unlabelled cameras, 250 frames/s)", "verdict", "labelled disagreements",
         "candidate / serving right", "p", "s to verdict"],
        [[name, r["verdict"], r["labelled_disagreements"], f"{r['candidate_right']} / {r['serving_right']}",
          "n/a" if r["p_value"] is None else f"{r['p_value']:.2g}", r["seconds_to_verdict"]]
         for name, r in sh["runs"].items()],
    ))  # fmt: skip
    tp = result["shadow_throughput"]
    print(
        f"edge images per CPU-second: {tp['images_per_cpu_s']}; with a shadow model {tp['slowdown']}x slower"
    )
    if args.shadow_only:
        print_json(result)
        return
    rb = result["rollback"]
    print(table(
        ["bad canary (1 of 2 cameras, 1 s windows)", "median s", "runs"],
        [
            ["publication -> rollback published", rb["median_to_rollback_s"],
             ", ".join(f"{r['to_rollback_s']:.1f}" for r in rb["runs"])],
            ["publication -> camera back on its model", rb["median_to_camera_back_s"],
             ", ".join(f"{r['to_camera_back_s']:.1f}" for r in rb["runs"])],
        ],
    ))  # fmt: skip
    print(f"other camera ran a bad model: {rb['other_camera_ran_bad_model'] or 'never'}")
    with tempfile.TemporaryDirectory(
        prefix="bench-drift-"
    ) as d:  # offline: windows simulated from real scores
        result["drift"] = measure(bench_model(args.model, Path(d)), "adwin", args.quick)
    print_json(result)


if __name__ == "__main__":
    main()
