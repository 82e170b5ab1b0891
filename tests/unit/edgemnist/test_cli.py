"""``edge-mnist train``: writes a loadable model with its card, and fails cleanly on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemnist.cli import COMMANDS, main
from edgemnist.model import load_model

REQUIRED = {
    "version",
    "sha256",
    "dataset",
    "n_train",
    "n_test",
    "accuracy",
    "uncertain_share",
    "confidence",
    "created",
    "estimator",
    "sklearn_version",
}


def test_train_writes_model_and_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models"
    assert main(["train", "--out", str(out), "--seed", "0", "--quiet"]) == 0
    models, cards = list(out.glob("*.skops")), list(out.glob("*.json"))
    assert len(models) == 1 and len(cards) == 1 and models[0].stem == cards[0].stem
    card = json.loads(cards[0].read_text())
    assert REQUIRED <= card.keys()
    assert card["accuracy"] >= 0.96 and (card["n_train"], card["n_test"]) == (4000, 1000)
    assert card["dataset"] == "bundled" and card["confidence"] == 0.70
    stdout = capsys.readouterr().out
    assert f"held-out accuracy: {card['accuracy']:.4f}" in stdout and str(models[0]) in stdout
    assert "uncertain share" in stdout
    assert load_model(out).sha256 == card["sha256"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--data", "camera"], "unknown training data 'camera'; valid forms: bundled"),
        (["train", "--data", "mnist-idx:/nonexistent/mnist"], "/nonexistent/mnist: not a directory"),
        (["train", "--confidence", "1.5"], "--confidence must be between 0 and 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("edge-mnist train: error:")


def test_subcommands_are_a_registry() -> None:
    assert "train" in COMMANDS and COMMANDS["train"].help
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_edge_mnist_works_without_the_demo_package(monkeypatch, tmp_path, capsys) -> None:
    """The edge image leaves edgemnist_demo out; `edge-mnist train` failed there building its parser."""
    import sys

    from edgemnist import cli

    for name in [m for m in sys.modules if m == "edgemnist_demo" or m.startswith("edgemnist_demo.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "edgemnist_demo", None)  # import edgemnist_demo -> ImportError
    assert cli.build_parser().parse_args(["train", "--out", str(tmp_path)]).out == str(tmp_path)
    assert cli.main(["demo", "--duration", "5"]) == 2
    assert "the demo is not installed here (package edgemnist_demo" in capsys.readouterr().err


def test_python_m_edgemnist_cli_lists_the_plugin_subcommands() -> None:
    """`python -m edgemnist.cli db ...` said "invalid choice: 'db'": the plugins' Command class was
    edgemnist.cli's while the running module was __main__, so every plugin was dropped."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "edgemnist.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("demo", "train", "db", "cdc", "evaluate"):
        assert f"    {name} " in proc.stdout, proc.stdout
