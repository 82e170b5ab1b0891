"""`make lint` inside `make test`: ruff and mypy over every package, so CI holds the code to them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("edgemnist", "edgemnist_demo", "edge_app", "metro_app")
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)


def test_ruff_finds_nothing() -> None:
    targets = (*PACKAGES, "tests", "bench", "notebooks")
    check = _run(str(BIN / "ruff"), "check", *targets)
    assert check.returncode == 0, check.stdout[-4000:]
    fmt = _run(str(BIN / "ruff"), "format", "--check", *targets)
    assert fmt.returncode == 0, fmt.stdout[-4000:]


def test_mypy_finds_nothing_in_the_packages() -> None:
    proc = _run(str(BIN / "mypy"), *PACKAGES)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Success: no issues found" in proc.stdout
