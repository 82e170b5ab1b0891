"""Safe rollout, measured: how fast a bad canary is rolled back.

One figure per function, each returning a dict that goes under its own key of
the JSON last line (``rollback`` here; drift figures join as their own key):

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


def _edge(camera: str, bootstrap: str, topic: str, model: Path, tmp: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "edge_app.cli", "run", "--camera", camera, "--source", "bundled", "--repeat", "0",
        "--delay", "0.004", "--metrics-duration", "1", "--bootstrap-servers", bootstrap, "--topic", topic,
        "--models-topic", f"{topic}.models", "--model", str(model), "--outbox", str(tmp / f"{camera}.db"),
    ]  # fmt: skip
    env = {**os.environ, "EDGE_MNIST_STATE_DIR": str(tmp / f"state-{camera}")}
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


def _epoch(iso: str) -> float:
    from edgemnist.wire.messages import parse_timestamp

    return parse_timestamp(iso).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", help="a Kafka to use (default: the embedded Tansu broker)")
    parser.add_argument("--model", type=Path, help="the fleet's model (default: trained now)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer drift runs and windows")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-rollout-") as d,
        broker(args.bootstrap_servers) as (bootstrap, desc),
    ):
        tmp = Path(d)
        model = bench_model(args.model, tmp)
        print(f"broker: {desc}")
        result["broker"] = desc
        result["rollback"] = rollback_figure(bootstrap, model, tmp, args.repeats)
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
