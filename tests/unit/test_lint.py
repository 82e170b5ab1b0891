"""`make lint` inside `make test`: ruff, mypy and import-linter over every package, so CI holds the code to them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("edgemnist", "edgemnist_demo", "edgemnist_cdc", "edge_app", "metro_app")
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


def test_the_layers_hold() -> None:
    """import-linter's contracts (pyproject.toml): demo and CDC above the apps, apps apart, core below."""
    proc = _run(str(BIN / "lint-imports"))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "0 broken" in proc.stdout


def test_no_package_imports_another_packages_private_module() -> None:
    import re

    pattern = re.compile(r"^\s*(?:from|import)\s+([a-z_]+)\.(?:[a-z_]+\.)*_[a-z]", re.M)
    found = []
    for path in REPO.glob("*/**/*.py"):
        top = path.relative_to(REPO).parts[0]
        if top in ("tests", ".venv") or top.startswith("."):
            continue
        for match in pattern.finditer(path.read_text()):
            if match.group(1) != top:
                found.append(f"{path.relative_to(REPO)}: {match.group(0).strip()}")
    assert not found, found
