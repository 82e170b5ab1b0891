"""`make test` on a fresh Debian machine: installs what the suite needs as root, or stops with the command.

Nothing is uninstalled here: .ci/system-deps runs with a PATH of fakes (`id`, `apt-get`, `java`...)
that stand for a machine with or without each package, and records what it would install.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "system-deps"
EVERYTHING = [
    "python3-venv",
    "default-jre-headless",
    "maven",
    "postgresql",
    "chromium",
    "buildah",
    "debootstrap",
]


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def run_deps(tmp_path: Path, *, uid: int, present: set[str]) -> tuple[int, str, list[str]]:
    """Run .ci/system-deps on a machine that has only `present`; (exit code, stderr, apt-get calls)."""
    bin_dir, pg = tmp_path / "bin", tmp_path / "postgresql"
    bin_dir.mkdir()
    pg.mkdir()
    log = tmp_path / "apt.log"
    for tool in ("grep", "cat"):
        os.symlink(f"/bin/{tool}", bin_dir / tool)
    _fake(bin_dir, "id", f"echo {uid}")
    _fake(bin_dir, "apt-get", f'echo "$*" >> {log}')
    python = sys.executable if "python3-venv" in present else str(bin_dir / "python-no-venv")
    _fake(bin_dir, "python-no-venv", "exit 1")
    if "default-jre-headless" in present:
        _fake(bin_dir, "java", "echo 'openjdk version \"17.0.13\" 2024-10-15' >&2")
    for pkg, tool in (
        ("maven", "mvn"),
        ("chromium", "chromium"),
        ("buildah", "buildah"),
        ("debootstrap", "debootstrap"),
    ):
        if pkg in present:
            _fake(bin_dir, tool, "exit 0")
    if "postgresql" in present:
        (pg / "15" / "bin").mkdir(parents=True)
        _fake(pg / "15" / "bin", "initdb", "exit 0")
    env = {"PATH": str(bin_dir), "PYTHON": python, "EDGE_MNIST_PG_ROOT": str(pg)}
    proc = subprocess.run(["/bin/bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc.returncode, proc.stderr, calls


def test_as_root_on_a_bare_machine_it_installs_everything_with_one_apt_update(tmp_path):
    code, err, calls = run_deps(tmp_path, uid=0, present=set())
    assert code == 0, err
    assert calls == ["update -q", "install -y -q " + " ".join(EVERYTHING)]


def test_as_root_it_installs_only_what_is_missing(tmp_path):
    code, err, calls = run_deps(tmp_path, uid=0, present=set(EVERYTHING) - {"chromium", "buildah"})
    assert code == 0, err
    assert calls == ["update -q", "install -y -q chromium buildah"]


def test_as_root_with_everything_installed_apt_is_not_touched(tmp_path):
    code, err, calls = run_deps(tmp_path, uid=0, present=set(EVERYTHING))
    assert (code, calls) == (0, [])


def test_not_root_it_stops_at_once_with_the_exact_command(tmp_path):
    code, err, calls = run_deps(tmp_path, uid=1000, present={"python3-venv", "maven"})
    assert code == 1 and calls == []
    missing = "default-jre-headless postgresql chromium buildah debootstrap"
    assert f"sudo apt-get update && sudo apt-get install -y {missing}" in err
    assert "sudo make test" in err


def test_not_root_with_everything_installed_it_still_stops_as_the_image_build_needs_root(tmp_path):
    code, err, calls = run_deps(tmp_path, uid=1000, present=set(EVERYTHING))
    assert code == 1 and calls == []
    assert "need root" in err and "sudo make test" in err


# run by `make test` itself: the outer make's flags must not leak into the make under test
_MAKE_ENV = {
    k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")
}


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["make", "--no-print-directory", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, env=_MAKE_ENV)


def test_make_test_checks_the_system_first_and_forbids_skips_and_the_tansu_fallback(tmp_path):
    proc = _make("-n", "test")
    assert proc.returncode == 0, proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    assert lines[0].endswith(".ci/system-deps")
    pytest_line = next(i for i, line in enumerate(lines) if "-m pytest tests" in line)
    assert "EDGE_MNIST_NO_SKIPS=1 EDGE_MNIST_REQUIRE_APACHE_KAFKA=1" in lines[pytest_line - 1]
    # as on a fresh clone (no venv yet, whatever this checkout's state): every extra the suite needs
    fresh = subprocess.run(
        ["make", "--no-print-directory", "-n", "install", f"VENV={tmp_path / 'venv'}"],
        env=_MAKE_ENV,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert any(
        "pip install -q -e '.[" in line and "hub" in line and "dev" in line
        for line in fresh.stdout.splitlines()
    )


def test_ci_only_calls_make_test():
    commands = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "exec make test"]


SKIPPING = """
import pytest

@pytest.fixture
def fx():
    pytest.skip("needs foo: apt-get install -y foo")

def test_setup(fx):
    pass

def test_body():
    pytest.skip("needs bar: apt-get install -y bar")

@pytest.mark.xfail(reason="a known bug")
def test_xfail():
    assert False

def test_ok():
    pass
"""


@pytest.mark.parametrize("strict", [False, True])
def test_under_make_test_every_skip_is_a_failure_that_says_what_to_install(tmp_path, strict):
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGE_MNIST_NO_SKIPS": "1" if strict else ""}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-W", "ignore",
         "--rootdir", str(tmp_path), str(tmp_path), "-q", "-rA"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout
    if not strict:
        assert proc.returncode == 0 and "1 passed, 2 skipped, 1 xfailed" in out, out[-2000:]
        return
    assert proc.returncode == 1, out[-2000:]
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in out, out[-2000:]
    assert "allows no skips (EDGE_MNIST_NO_SKIPS=1): needs foo: apt-get install -y foo" in out
    assert "needs bar: apt-get install -y bar" in out
