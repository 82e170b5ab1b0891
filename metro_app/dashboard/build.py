"""Helpers behind the build notebooks: model, sample predictions, edge image, archives, local jobs.

The edge is driven through its `edge-app` command (never imported: apps do not import each other).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgemnist.runsummary import read_summary

__all__ = [
    "EDGE_IMAGE",
    "ensure_model",
    "sample_predictions",
    "image_build_command",
    "build_edge_image",
    "run_command",
    "edge_command",
    "run_edge",
    "metro_command",
    "wait_for_hub",
    "wait_for_camera",
]

EDGE_IMAGE = "edge-camera-classifier-app:v1"


def run_command(
    cmd: Sequence[str], timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command, echo it and its output (stdout and stderr together), return the result."""
    print("$", shlex.join(cmd), flush=True)
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    out = (proc.stdout + proc.stderr).strip()
    if out:
        print(out[-4000:], flush=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} exited with {proc.returncode}")
    return proc


def ensure_model(model: str | Path = "models") -> Path:
    """The model file to use: `model` itself, the newest .skops in it, or one trained into it now."""
    from edgemnist.model import ensure_model as core_ensure_model

    return core_ensure_model(model)


def sample_predictions(model_path: str | Path, n: int = 8, source: str = "bundled") -> dict[str, Any]:
    """Score the first n frames of a source as the edge does; returns rows and a PNG of them."""
    from edgemnist.data import load_frames
    from edgemnist.model import load_model
    from edgemnist.prep import prepare_frames
    from metro_app.dashboard.charts import grid_png

    frames = load_frames(source)
    batch = list(frames.frames[:n])
    prepared = prepare_frames(batch)
    model = load_model(model_path)
    proba = model.predict_proba(prepared.images)
    rows = []
    for k, pos in enumerate(prepared.index):
        truth = int(frames.labels[pos]) if frames.labels is not None else None
        rows.append(
            {"frame": batch[pos], "prepared": prepared.images[k], "predicted": int(proba[k].argmax()),
             "probability": float(proba[k].max()), "true_class": truth}
        )  # fmt: skip
    return {"model_version": model.version, "rows": rows, "png": grid_png(rows)}


def image_build_command(tag: str = EDGE_IMAGE, context: str | Path = ".") -> list[str] | None:
    """How to build Dockerfile.edge here: docker, else buildah (offline, via docker/build-image.sh); None when neither."""
    ctx = Path(context)
    if shutil.which("docker"):
        return ["docker", "build", "-f", str(ctx / "Dockerfile.edge"), "-t", tag, str(ctx)]
    if shutil.which("buildah"):
        script = ctx / "docker" / "build-image.sh"
        if script.exists():
            return ["env", f"IMAGE_TAG={tag}", "bash", str(script)]
        return ["buildah", "bud", "-f", str(ctx / "Dockerfile.edge"), "-t", tag, str(ctx)]
    return None


def build_edge_image(tag: str = EDGE_IMAGE, context: str | Path = ".", build: bool = True) -> bool:
    """Build the edge image, or print the command where no builder exists or `build` is off; True when built."""
    cmd = image_build_command(tag, context)
    if cmd is None:
        text = f"docker build -f {Path(context) / 'Dockerfile.edge'} -t {tag} {context}"
        print(f"neither docker nor buildah is installed; on a machine with one, run:\n  {text}")
        return False
    if not build:
        print(f"to build the edge image {tag}, run:\n  {shlex.join(cmd)}")
        return False
    result = run_command(cmd, timeout=3600, check=False)
    if result.returncode != 0:
        print(f"building {tag} failed (exit {result.returncode}); the output above says why")
        return False
    print(f"built {tag}")
    return True


def edge_command(*args: str) -> list[str]:
    """`edge-app ARGS` with this kernel's Python."""
    return [sys.executable, "-m", "edge_app.cli", *args]


def metro_command(*args: str) -> list[str]:
    """`metro-app ARGS` with this kernel's Python."""
    return [sys.executable, "-m", "metro_app.cli", *args]


def run_edge(args: Sequence[str], background: bool = False, timeout: float = 600) -> Any:
    """Run `edge-app run ARGS`: to completion (prints its closing summary), or in the background."""
    summary = Path(tempfile.mkdtemp(prefix="edge-summary-")) / "summary.jsonl"
    cmd = edge_command("run", *args) if background else edge_command("run", *args, "--summary", str(summary))
    if background:
        print("$", shlex.join(cmd), "&", flush=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"edge running as pid {proc.pid}; stop it with proc.terminate()")
        return proc
    run_command(cmd, timeout=timeout)
    got = read_summary(summary)
    shutil.rmtree(summary.parent, ignore_errors=True)
    return got


def _poll(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


def wait_for_hub(api_url: str, timeout: float = 90) -> dict[str, Any]:
    """The hub's /health once it answers ok."""
    from metro_app.client import ApiError, ViewClient

    client = ViewClient(api_url, timeout=5)

    def healthy() -> dict[str, Any] | None:
        try:
            h = client.health()
        except ApiError:
            return None
        return h if h.get("status") == "ok" else None

    return _poll(healthy, timeout, f"the hub at {api_url}")


def wait_for_camera(api_url: str, camera: str, timeout: float = 90) -> dict[str, Any]:
    """The CameraHealth row of the first camera whose name starts with `camera`, once the hub has one."""
    from metro_app.client import ViewClient

    client = ViewClient(api_url, timeout=5)

    def found() -> dict[str, Any] | None:
        return next((c for c in client.cameras() if c["name"].startswith(camera)), None)

    return _poll(found, timeout, f"camera {camera} at the hub {api_url}")
