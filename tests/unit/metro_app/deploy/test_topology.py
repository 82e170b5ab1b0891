"""The hub's streamsx topology: a build archive made offline, with the expected operators and views."""

import shutil
import zipfile

import pytest

from metro_app.cli import main
from metro_app.deploy.topology import AsList, FleetWindow, IsKind
from metro_app.samples import make_metrics

pytest.importorskip("streamsx", reason="streamsx is not installed (pip install -e '.[streams]')")
needs_java = pytest.mark.skipif(
    shutil.which("java") is None, reason="Java is not installed: apt-get install openjdk-17-jre-headless"
)


@needs_java
def test_metro_build_produces_a_streams_archive_with_the_hub_operators(tmp_path, capsys):
    assert main(["build", "--target", "streams-archive", "--out", str(tmp_path), "--topic", "t1"]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("MetroEdge.zip")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        [spl] = [n for n in names if n.endswith("edgemnist/MetroEdge.spl")]
        text = z.read(spl).decode()
        reqs = z.read(next(n for n in names if n.endswith("requirements.txt"))).decode()
    for op in (
        "KafkaHub = com.ibm.streamsx.topology.functional.python::Source",
        "Metrics = com.ibm.streamsx.topology.functional.python::Filter",
        "WindowUncertainList = com.ibm.streamsx.topology.functional.python::Aggregate",
    ):
        assert op in text
    for view in ("ClassificationMetrics", "WindowUncertain", "UncertainPredictions", "FleetMetrics"):
        assert f'@view(name = "{view}"' in text
    assert any(n.endswith("opt/python/packages/metro_app/ingest/loop.py") for n in names)
    assert "kafka-python" in reqs and "sqlalchemy" in reqs


def test_topology_stages_split_and_window_like_the_reference():
    m = make_metrics("CamA", 1).to_dict()
    assert IsKind("camera_metrics")(m) and not IsKind("image")(m)
    assert AsList()([m, m]) == [m, m]
    assert FleetWindow()([m])["cameras"]["CamA"]["images"] == 20
