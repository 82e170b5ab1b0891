"""Does retraining on a rotated camera's labelled uncertain images help on its *other* digits?

A camera whose frames are rotated 25 degrees: the current model's uncertain
images of the rotated bundled train split (p <= 0.70) are stored and labelled
with their true class, `metro_app.retrain.retrain` runs as the hub runs it
(20 % of the labels held out), and the candidate is scored on the rotated
bundled stream split, which is never labelled. Prints one line per label
count and, last, JSON.

    python -m bench.retrain_rotated [--labels 50,150,300,all]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgemnist.data import load_bundled
from edgemnist.model import Model, load_model, load_model_bytes, prepared_dataset, save_model, train_model
from metro_app.retrain import RetrainSettings, retrain
from metro_app.store import Store
from tests.loop_data import rotated, rotated_uncertain


def _accuracy(model: Model, data: tuple[np.ndarray, np.ndarray]) -> float:
    return float((model.predict_proba(data[0]).argmax(axis=1) == data[1]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--labels", default="50,150,300,all")
    parser.add_argument("--degrees", type=float, default=25)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="retrain-bench-"))
    model_path, _ = save_model(
        train_model(load_bundled("train"), progress=False), tmp / "models", dataset="bundled",
        n_train=4000, n_test=1000, accuracy=0.0, uncertain_share=0.0,
    )  # fmt: skip
    parent = load_model(model_path)
    stream = prepared_dataset(rotated(load_bundled("stream"), args.degrees))
    every = rotated_uncertain(model_path, 10**6, degrees=args.degrees)
    rows = []
    for n in args.labels.split(","):
        msgs = every if n == "all" else every[: int(n)]
        store = Store(f"sqlite:///{tmp / f'hub-{n}.db'}")
        store.write_batch([], msgs)
        for m in msgs:
            store.add_label(m.id or "", str(m.true_class), "bench")
        t = time.monotonic()
        result = retrain(store, RetrainSettings(model=str(model_path)))
        seconds = time.monotonic() - t
        cand = load_model_bytes(store.model_file(result.version or "") or b"", expected_sha256=None)
        row = {
            "labels": len(msgs),
            "accepted": result.accepted,
            "rotated_stream_before": _accuracy(parent, stream),
            "rotated_stream_after": _accuracy(cand, stream),
            "base_before": result.parent_base_accuracy,
            "base_after": result.base_accuracy,
            "field_holdout_before": result.parent_field_accuracy,
            "field_holdout_after": result.field_accuracy,
            "retrain_seconds": round(seconds, 1),
        }
        rows.append(row)
        store.close()
        print(
            f"{row['labels']:4d} labels: rotated stream {row['rotated_stream_before']:.3f} -> "
            f"{row['rotated_stream_after']:.3f}, base {row['base_before']:.3f} -> {row['base_after']:.3f}, "
            f"accepted {row['accepted']}, {seconds:.1f} s",
            flush=True,
        )
    print(json.dumps({"degrees": args.degrees, "uncertain_available": len(every), "runs": rows}))


if __name__ == "__main__":
    main()
