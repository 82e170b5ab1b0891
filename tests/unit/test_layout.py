"""The layout of the tests themselves: no test module imports another, each fixture is defined once.

Shared helpers live in the packages' `testing` modules or in support modules under `tests/`
(`tests/helpers.py`, `tests/e2e/stack.py`, ...); shared fixtures live in a `conftest.py`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _is_test_or_conftest(dotted: str) -> bool:
    return any(part.startswith("test_") or part == "conftest" for part in dotted.split("."))


def forbidden_imports(root: Path) -> list[str]:
    """`file:line imports module` for each import, by any module under `root`, of a test module or a conftest."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                sep = "" if base.endswith(".") else "."
                modules = [base, *(f"{base}{sep}{alias.name}" for alias in node.names)]
            else:
                continue
            bad = [m for m in modules if _is_test_or_conftest(m)]
            if bad:
                found.append(f"{path.relative_to(root)}:{node.lineno} imports {bad[0]}")
    return found


def _fixture_name(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    for dec in node.decorator_list:
        call = dec if isinstance(dec, ast.Call) else None
        target = call.func if call else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name == "fixture":
            for kw in call.keywords if call else []:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    return str(kw.value.value)
            return node.name
    return None


def duplicate_fixtures(root: Path) -> dict[str, list[str]]:
    """Fixture names defined in more than one module under `root`, with the modules."""
    where: dict[str, set[str]] = defaultdict(set)
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (name := _fixture_name(node)):
                where[name].add(str(path.relative_to(root)))
    return {name: sorted(paths) for name, paths in sorted(where.items()) if len(paths) > 1}


def test_no_module_under_tests_imports_a_test_module_or_a_conftest():
    assert forbidden_imports(TESTS) == []


def test_every_fixture_is_defined_in_one_module_only():
    assert duplicate_fixtures(TESTS) == {}


def test_the_checks_fire(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "test_one.py").write_text(
        "import pytest\nfrom tests.a.test_two import helper\n\n\n"
        "@pytest.fixture\ndef store():\n    pass\n\n\n"
        "@pytest.fixture(name='client')\ndef _client():\n    pass\n"
    )
    (tmp_path / "a" / "test_two.py").write_text(
        "from pytest import fixture\n\nfrom . import conftest\nimport tests.conftest\n\n\n"
        "@fixture(scope='module')\ndef store():\n    pass\n"
    )
    (tmp_path / "a" / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.fixture\ndef client():\n    pass\n"
    )
    assert forbidden_imports(tmp_path) == [
        "a/test_one.py:2 imports tests.a.test_two",
        "a/test_two.py:3 imports .conftest",
        "a/test_two.py:4 imports tests.conftest",
    ]
    assert duplicate_fixtures(tmp_path) == {
        "client": ["a/conftest.py", "a/test_one.py"],
        "store": ["a/test_one.py", "a/test_two.py"],
    }
