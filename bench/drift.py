"""Drift alerts, measured offline: detection delay and false alarms per 1,000 undisturbed windows.

No broker: the bundled stream digits are scored by the model once clean and once per
distortion (`edgemnist.distort`: rotations and pixel noise, as `edge-app --distort` applies
them); a camera's metrics windows are then simulated from those per-image results the way an
edge builds them (consecutive frames of the looping stream, from a random offset, a window's
image count drawn around its mean), and fed to `metro_app.monitoring.drift.CameraDrift` exactly as the hub
feeds it.

- false alarms: alerts on undisturbed cameras, per 1,000 windows (several seeded cameras);
- detection delay: windows from the first distorted window to the window whose observation
  raised the alert (on either signal), median and max over seeded runs; `missed` counts runs
  with no alert within `--max-delay` windows.

Two window sizes: 250 images (the e2e test's cameras, 1 s windows) and 50 (a slow camera).

    .venv/bin/python bench/drift.py [--model PATH] [--quick] [--detector adwin|page_hinkley]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import bench_model, limit_to_one_thread, print_json, table  # noqa: E402
from edgemnist.data import load_frames  # noqa: E402
from edgemnist.distort import distorted_frames  # noqa: E402
from edgemnist.model import load_model  # noqa: E402
from edgemnist.prep import prepare_frames  # noqa: E402
from edgemnist.uncertainty import CONFIDENCE  # noqa: E402
from metro_app.monitoring.drift import CameraDrift, DriftSettings  # noqa: E402

DISTORTIONS = ("rotate:15", "rotate:30", "rotate:45", "noise:8", "noise:32")
PerImage = tuple[np.ndarray, np.ndarray]  # (uncertain, correct) booleans per stream image


def score(model_path: Path, spec: str) -> PerImage:
    """Per image of the bundled stream, distorted by `spec`: uncertain (p <= 0.7) and correct."""
    frames = distorted_frames("bundled", spec) if spec else load_frames("bundled")
    assert frames.labels is not None
    prep = prepare_frames(frames.frames)
    probs = load_model(model_path).predict_proba(prep.images)
    return probs.max(axis=1) <= CONFIDENCE, probs.argmax(axis=1) == frames.labels[prep.index]


class Camera:
    """Windows of one simulated camera: consecutive frames of the looping stream."""

    def __init__(self, seed: int, images: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.images = images
        self.pos = int(self.rng.integers(0, 1000))
        self.n = 0

    def window(self, data: PerImage) -> dict[str, Any]:
        unc, ok = data
        size = max(1, int(self.rng.poisson(self.images)))
        idx = (self.pos + np.arange(size)) % len(unc)
        self.pos = int((self.pos + size) % len(unc))
        self.n += 1
        u = int(unc[idx].sum())
        ts = f"2026-01-01T00:{self.n // 60 % 60:02d}:{self.n % 60:02d}.{self.n:06d}Z"
        return {
            "camera_metrics": {"C": {"certain": [size - u] + [0] * 10, "uncertain": [u] + [0] * 10}},
            "timestamp": ts,
            "id": f"C/m{self.n}",
            "model_version": "m1",
            "labelled": size,
            "correct": int(ok[idx].sum()),
        }


def false_alarms(clean: PerImage, settings: DriftSettings, images: int, windows: int, cameras: int) -> int:
    alarms = 0
    for seed in range(cameras):
        cam, drift = Camera(1000 + seed, images), CameraDrift("C", settings)
        for _ in range(windows):
            alarms += sum(c.worse for c in drift.add(cam.window(clean)))
    return alarms


def delays(
    clean: PerImage, bad: PerImage, settings: DriftSettings, images: int, runs: int, warm: int, max_delay: int
) -> list[int | None]:
    out: list[int | None] = []
    for seed in range(runs):
        cam, drift = Camera(seed, images), CameraDrift("C", settings)
        early = sum(c.worse for _ in range(warm) for c in drift.add(cam.window(clean)))
        found = None if not early else -1
        for k in range(1, max_delay + 1):
            if found is not None:
                break
            if any(c.worse for c in drift.add(cam.window(bad))):
                found = k
        out.append(found)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=None, help="a .skops model (default: train one now)")
    p.add_argument("--quick", action="store_true", help="fewer runs and windows")
    p.add_argument("--detector", default="adwin", choices=("adwin", "page_hinkley"))
    p.add_argument("--max-delay", type=int, default=40)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = bench_model(args.model, Path(tmp))
        result = measure(model, args.detector, args.quick, args.max_delay)
    print_json(result)
    return 0


def measure(model: Path, detector: str = "adwin", quick: bool = False, max_delay: int = 40) -> dict[str, Any]:
    """Detection delay and false alarms for `model`'s scores; prints the table, returns the figures."""
    threads = limit_to_one_thread()
    settings = DriftSettings(detector=detector)
    runs, windows, cameras = (10, 1000, 3) if quick else (30, 2000, 5)
    print(f"drift detector {settings} ({threads})")
    clean = score(model, "")
    scored = {spec: score(model, spec) for spec in DISTORTIONS}
    rows, result = [], {"detector": detector, "settings": _settings(settings), "sizes": {}}
    for images in (250, 50):
        fa = false_alarms(clean, settings, images, windows, cameras)
        per_1000 = 1000 * fa / (windows * cameras)
        size: dict[str, Any] = {"false_alarms_per_1000": per_1000, "undisturbed_windows": windows * cameras}
        for spec, bad in scored.items():
            d = delays(clean, bad, settings, images, runs, warm=30, max_delay=max_delay)
            hit = sorted(x for x in d if x is not None and x > 0)
            early = sum(1 for x in d if x == -1)
            missed = sum(1 for x in d if x is None)
            med = float(np.median(hit)) if hit else None
            size[spec] = {
                "uncertain_share": round(float(bad[0].mean()), 3),
                "accuracy": round(float(bad[1].mean()), 3),
                "delay_median": med,
                "delay_max": max(hit) if hit else None,
                "missed": missed,
                "early": early,
                "runs": runs,
            }
            rows.append(
                [
                    images,
                    spec,
                    f"{bad[0].mean():.1%}",
                    f"{bad[1].mean():.1%}",
                    med,
                    max(hit) if hit else None,
                    f"{missed}/{runs}",
                    f"{per_1000:.2f}",
                ]  # fmt: skip
            )
        result["sizes"][str(images)] = size
    print(f"clean stream: uncertain {clean[0].mean():.1%}, accuracy {clean[1].mean():.1%}")
    print(
        table(
            [
                "images/window",
                "distortion",
                "uncertain",
                "accuracy",
                "delay p50",
                "delay max",
                "missed",
                "false alarms /1000",
            ],  # fmt: skip
            rows,
        )
    )
    return result


def _settings(s: DriftSettings) -> dict[str, Any]:
    return {
        k: getattr(s, k)
        for k in ("detector", "delta", "threshold", "min_windows", "min_images", "min_change")
    }


if __name__ == "__main__":
    raise SystemExit(main())
