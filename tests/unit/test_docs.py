"""The documentation: the mkdocs site builds strictly, the README stays short, no page cites a missing document."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
README_MAX_LINES = 220
# the upstream specification the project was written from; the repository has docs/reference.md instead
UPSTREAM_SPEC = "REFERENCE" + ".md"


def _tracked_text_files() -> list[Path]:
    proc = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=60)
    if proc.returncode == 0:
        names = [n for n in proc.stdout.decode().split("\0") if n]
    else:  # an unpacked source tree without git: every file outside the build and tool folders
        skip = {".git", ".venv", "build", "dist", "site", "test-artifacts"}
        names = [
            p.relative_to(REPO).as_posix()
            for p in REPO.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(REPO).parts) and "cache" not in str(p)
        ]
    return [REPO / n for n in names if (REPO / n).is_file()]


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken link or anchor, or a page left out of the nav, fails it."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    index = (tmp_path / "site" / "index.html").read_text()
    assert "reference/" in index and "benchmarks/" in index  # the nav reached the pages
    assert "<table>" in (tmp_path / "site" / "layout" / "index.html").read_text()


def test_the_readme_is_for_the_first_ten_minutes() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to a docs/ page"
    text = "\n".join(lines)
    assert "make demo" in text and "make test" in text  # the two commands; CI reads `make test` there


def test_the_readmes_links_lead_somewhere() -> None:
    text = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not (REPO / t).exists()]
    assert not missing, missing


def test_no_file_cites_the_upstream_specification() -> None:
    """The facts the code relies on are in docs/reference.md, which the repository has."""
    found = []
    for path in _tracked_text_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if UPSTREAM_SPEC in text:
            found.append(path.relative_to(REPO).as_posix())
    assert not found, f"cite docs/reference.md (and a section) instead: {found}"
