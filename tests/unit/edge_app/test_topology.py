"""The edge's streamsx topology: a build archive made offline, wired from the same stages as our runner."""

import shutil
import zipfile

import pytest

from edge_app.cli import main

pytest.importorskip("streamsx", reason="streamsx is not installed (pip install -e '.[streams]')")


@pytest.mark.skipif(
    shutil.which("java") is None, reason="Java is not installed: apt-get install openjdk-17-jre-headless"
)
def test_edge_build_produces_a_streams_archive_with_the_edge_operators(tmp_path, capsys):
    args = [
        "build",
        "--target",
        "streams-archive",
        "--out",
        str(tmp_path),
        "--parallelism",
        "2",
        "--model",
        str(tmp_path / "m.skops"),
        "--outbox",
        str(tmp_path / "o.db"),
    ]
    assert main(args) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("EdgeCameraClassifier.zip")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        [spl] = [n for n in names if n.endswith("EdgeCameraClassifier.spl")]
        text = z.read(spl).decode()
    for op, kind in (
        ("ImageSource", "Source"),
        ("Enrich", "Map"),
        ("Score", "Map"),
        ("UncertainFilter", "FlatMap"),
        ("MetricsWindow", "FlatMap"),
        ("Outbox", "ForEach"),
    ):
        assert f"{op} = com.ibm.streamsx.topology.functional.python::{kind}" in text, op
    assert "@parallel(width=2)" in text
    assert any(n.endswith("opt/python/packages/edge_app/stages.py") for n in names)
