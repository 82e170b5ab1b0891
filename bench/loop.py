"""The learning loop, measured: what labelled uncertain images buy, and what a hot swap costs.

Part 1, for two drifting cameras:
- `rotate:25`: the bundled training digits rotated 25 degrees stream through the camera; its
  uncertain images (p <= confidence) are labelled with their true class; accuracy is measured on
  the rotated 1,000 stream digits, never labelled;
- `digits`: scikit-learn's 8x8 digits, upscaled, as a camera: uncertain images of the first half
  are labelled, accuracy is measured on the second half.
For 50, 100, 200 and 400 labels, `metro_app.training.retrain.retrain` runs exactly as the hub runs it
(20 % of the labels held out, the documented decision rule) and the candidate is scored beside the
serving model; base accuracy (the 1,000 held-out bundled digits) alongside, and the retrain's wall
time (BLAS limited to one thread).

Part 2, the hot swap: a whole edge (`run_edge`, in process) scores the bundled digits while the
models topic offers a new model every half second (alternating two models, as a rollout and a
rollback would); the gap between consecutive micro-batches at a swap is compared with the steady
state (p50 / p99), and frames scored are checked against frames emitted (dropped must be 0).

    .venv/bin/python bench/loop.py [--labels 50,100,200,400] [--quick]

Prints tables and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import limit_to_one_thread, print_json, table  # noqa: E402
from edgemnist.data import Frames, load_frames  # noqa: E402
from edgemnist.distort import distorted_frames  # noqa: E402
from edgemnist.model import CONFIDENCE, Model, load_model, load_model_bytes, train_default  # noqa: E402
from edgemnist.prep import prepare_frames  # noqa: E402
from edgemnist.wire.messages import MetricsMessage, UncertainImage, parse_message, utc_timestamp  # noqa: E402

CameraData = tuple[list[UncertainImage], tuple[np.ndarray, np.ndarray]]


def _split(frames: Frames, part: slice) -> Frames:
    assert frames.labels is not None
    return Frames(frames.name, frames.frames[part], frames.labels[part])


def _prepared(frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    assert frames.labels is not None
    prep = prepare_frames(frames.frames)
    return prep.images, frames.labels[prep.index]


def _uncertain(model: Model, frames: Frames, camera: str) -> list[UncertainImage]:
    """The frames the serving model is unsure of, as the edge sends them home."""
    assert frames.labels is not None
    prep = prepare_frames(frames.frames)
    proba = model.predict_proba(prep.images)
    out = []
    for row, pos in enumerate(prep.index):
        p = proba[row]
        if p.max() > CONFIDENCE:
            continue
        out.append(
            UncertainImage(
                count=int(pos), image=base64.b64encode(frames.frames[pos]).decode("ascii"), camera=camera,
                timestamp=utc_timestamp(), prepared_image=prep.images[row], prep_time=0.0,
                predictions=tuple(float(x) for x in p), result_class=int(p.argmax()),
                result_probability=float(p.max()), predict_time=0.0, id=f"{camera}/bench/{pos}",
                model_version=model.version, true_class=int(frames.labels[pos]),
            )
        )  # fmt: skip
    return out


def cameras(model: Model) -> dict[str, CameraData]:
    """Per drifting camera: the uncertain images to label, and the never-labelled evaluation set."""
    rotated_train = distorted_frames("bundled-train", "rotate:25")
    rotated_stream = distorted_frames("bundled", "rotate:25")
    digits = load_frames("digits")
    half = len(digits) // 2
    return {
        "rotate:25": (_uncertain(model, rotated_train, "Rot25"), _prepared(rotated_stream)),
        "digits": (
            _uncertain(model, _split(digits, slice(0, half)), "Digits"),
            _prepared(_split(digits, slice(half, None))),
        ),
    }


def _accuracy(model: Model, data: tuple[np.ndarray, np.ndarray]) -> float:
    return float((model.predict_proba(data[0]).argmax(axis=1) == data[1]).mean())


def retrain_runs(model_path: Path, labels: list[int], tmp: Path) -> list[dict[str, Any]]:
    from metro_app.store import Store
    from metro_app.training.retrain import RetrainSettings, retrain

    parent = load_model(model_path)
    rows = []
    for name, (uncertain, held_out) in cameras(parent).items():
        before = _accuracy(parent, held_out)
        for n in sorted({min(n, len(uncertain)) for n in labels}):  # a camera may have fewer to label
            msgs = uncertain[:n]
            db = tmp / f"hub-{name.replace(':', '')}-{n}.db"
            store = Store(f"sqlite:///{db}")
            store.write_batch([], msgs)
            for m in msgs:
                store.add_label(m.id or "", str(m.true_class), "bench")
            t0 = time.perf_counter()
            result = retrain(store, RetrainSettings(model=str(model_path)), console=False)
            seconds = time.perf_counter() - t0
            candidate = load_model_bytes(store.model_file(result.version or "") or b"", expected_sha256=None)
            store.close()
            rows.append(
                {
                    "camera": name,
                    "labels": len(msgs),
                    "uncertain_available": len(uncertain),
                    "field_before": before,
                    "field_after": _accuracy(candidate, held_out),
                    "base_before": result.parent_base_accuracy,
                    "base_after": result.base_accuracy,
                    "accepted": result.accepted,
                    "reason": result.reason,
                    "retrain_seconds": seconds,
                }
            )
            r = rows[-1]
            print(
                f"  {name} {r['labels']:4d} labels: field {r['field_before']:.3f} -> {r['field_after']:.3f}, "
                f"base {r['base_before']:.3f} -> {r['base_after']:.3f}, {seconds:.1f} s",
                flush=True,
            )
    return rows


class _Offers:
    """A models topic that offers the two models in turn, one every `every` seconds."""

    def __init__(self, envelopes: list[Any], every: float) -> None:
        self._envelopes, self._every, self._next, self._k = envelopes, every, time.monotonic() + every, 0
        self.offered = 0

    def __call__(self) -> _Offers:
        return self

    def open(self) -> bool:
        return True

    def poll(self, timeout: float) -> list[Any]:
        from edgemnist.kafka import TopicRecord

        wait = self._next - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return []
        time.sleep(max(0.0, wait))
        self._next += self._every
        env = self._envelopes[self._k % len(self._envelopes)]
        self._k += 1
        self.offered += 1
        key, value = env.to_record()
        return [TopicRecord("models", 0, self._k, -1, key, value)]

    def caught_up(self) -> bool:
        return True

    def close(self) -> None:
        pass


class _Clock:
    """A tap: the time each micro-batch finished, and the model that scored it."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, str | None, int]] = []

    def __call__(self, batch: Any, scored: Any, sent: Any) -> None:
        self.marks.append((time.perf_counter(), scored.model_version, len(scored.index)))

    def finish(self) -> None:
        pass


def swap_pause(model_a: Path, model_b: Path, tmp: Path, repeat: int) -> dict[str, Any]:
    from edge_app.runner import StdoutSink, run_edge
    from edge_app.settings import EdgeSettings
    from edgemnist.wire.envelope import ModelEnvelope

    envs = []
    for path in (model_b, model_a):
        m = load_model(path)
        envs.append(ModelEnvelope(m.version, m.sha256, path.read_bytes(), created=utc_timestamp()))
    offers, clock, out = _Offers(envs, every=0.5), _Clock(), io.StringIO()
    settings = EdgeSettings(
        model=model_a, camera="SwapBench", repeat=repeat, delay=0.0002, batch_size=64,
        metrics_duration=3600, outbox=tmp / "o.db", source="bundled",
    )  # fmt: skip
    old = os.environ.get("EDGE_MNIST_STATE_DIR")
    os.environ["EDGE_MNIST_STATE_DIR"] = str(tmp / "state")
    try:
        stats = run_edge(settings, StdoutSink(out), models=offers, taps=[clock])
    finally:
        if old is None:
            os.environ.pop("EDGE_MNIST_STATE_DIR", None)
        else:
            os.environ["EDGE_MNIST_STATE_DIR"] = old
    metrics = [
        m for line in out.getvalue().splitlines() if isinstance(m := parse_message(line), MetricsMessage)
    ]
    gaps = np.diff([t for t, _, _ in clock.marks])
    at_swap = np.array([k for k in range(1, len(clock.marks)) if clock.marks[k][1] != clock.marks[k - 1][1]])
    steady = np.delete(gaps, np.concatenate([at_swap - 1, at_swap]) if len(at_swap) else [])
    swap_gaps = gaps[at_swap - 1] if len(at_swap) else np.array([])
    emitted = 1000 * repeat
    return {
        "swaps": len(at_swap),
        "offered": offers.offered,
        "batches": len(clock.marks),
        "steady_gap_p50_ms": float(np.percentile(steady, 50) * 1000),
        "steady_gap_p99_ms": float(np.percentile(steady, 99) * 1000),
        "swap_gap_p50_ms": float(np.percentile(swap_gaps, 50) * 1000) if len(swap_gaps) else None,
        "swap_gap_p99_ms": float(np.percentile(swap_gaps, 99) * 1000) if len(swap_gaps) else None,
        "frames_emitted": emitted,
        "frames_scored": stats.scored,
        "frames_in_windows": sum(m.total for m in metrics),
        "frames_dropped": emitted - stats.scored,
        "windows": len(metrics),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--labels", default="50,100,200,400", help="label counts to retrain with")
    parser.add_argument("--repeat", type=int, default=20, help="passes over the 1,000 digits in the swap run")
    parser.add_argument("--quick", action="store_true", help="one label count, a short swap run")
    args = parser.parse_args()
    labels = [50] if args.quick else [int(n) for n in args.labels.split(",")]
    print(limit_to_one_thread())
    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    model_a, _ = train_default(tmp / "a", progress=False)
    model_b, _ = train_default(tmp / "b", seed=1, progress=False)
    print("retraining on labelled uncertain images of two drifting cameras:")
    rows = retrain_runs(model_a, labels, tmp)
    print(
        table(
            [
                "camera",
                "labels",
                "field acc before",
                "field acc after",
                "base before",
                "base after",
                "accepted",
                "retrain s",
            ],
            [
                [
                    r["camera"],
                    r["labels"],
                    f"{r['field_before']:.3f}",
                    f"{r['field_after']:.3f}",
                    f"{r['base_before']:.3f}",
                    f"{r['base_after']:.3f}",
                    r["accepted"],
                    f"{r['retrain_seconds']:.1f}",
                ]
                for r in rows
            ],
        )  # fmt: skip
    )
    swap = swap_pause(model_a, model_b, tmp, 3 if args.quick else args.repeat)
    print(f"hot swap: {swap['swaps']} swaps in {swap['batches']} micro-batches of up to 64 images")
    print(
        table(
            ["gap between micro-batches", "p50 ms", "p99 ms"],
            [
                ["steady state", f"{swap['steady_gap_p50_ms']:.2f}", f"{swap['steady_gap_p99_ms']:.2f}"],
                ["at a swap", f"{swap['swap_gap_p50_ms'] or 0:.2f}", f"{swap['swap_gap_p99_ms'] or 0:.2f}"],
            ],
        )  # fmt: skip
    )
    print(
        f"frames emitted {swap['frames_emitted']}, scored {swap['frames_scored']}, in metrics windows "
        f"{swap['frames_in_windows']}, dropped {swap['frames_dropped']}"
    )
    print_json({"retrain": rows, "swap": swap})
    return 0 if swap["frames_dropped"] == 0 and swap["frames_in_windows"] == swap["frames_scored"] else 1


if __name__ == "__main__":
    sys.exit(main())
