"""A running edge refuses bad models from the models topic, reports them, and keeps serving.

Three records, each the newest for the camera when it arrives: a tampered model (bytes
changed, card kept), a skops file holding a type outside the allow-list (a decision tree),
and one holding a class that would write a file when built. Real Apache Kafka, the edge as
a separate process, the refusals read back from the events topic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import signal
import subprocess

import numpy as np
import pytest
import skops.io as sio
from sklearn.tree import DecisionTreeClassifier

from edgemnist.kafka import ensure_topics
from edgemnist.model import load_model
from edgemnist.wire.envelope import ModelEnvelope
from tests.e2e._payload import MarkerOnLoad
from tests.helpers import (
    EDGE_APP,
    create_models_topic,
    model_envelope,
    publish_records,
    read_topic,
    split,
    train_small_model,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def _refused(msgs: list) -> list[tuple[str, str]]:
    return [(r.version, r.reason) for m in split(msgs)[1] for r in (m.model_refused or ())]


def test_tampered_and_foreign_models_are_refused_and_nothing_runs(
    kafka, kafka_settings, model_path, tmp_path, make_topic
):
    events, models = make_topic("events"), make_topic("models")
    ensure_topics(kafka_settings, {events: 1})
    create_models_topic(kafka_settings, models)
    serving = load_model(model_path).version

    real = model_envelope(train_small_model(tmp_path / "real"))
    data = bytearray(real.data)
    data[len(data) // 3] ^= 0x55
    tampered = dataclasses.replace(real, data=bytes(data))  # header (version, sha256, size) kept

    tree_bytes = sio.dumps(DecisionTreeClassifier(random_state=0).fit(np.eye(10), np.arange(10)))
    tree = ModelEnvelope("m-foreign-tree", hashlib.sha256(tree_bytes).hexdigest(), tree_bytes)

    marker = tmp_path / "model-code-ran"
    evil_bytes = sio.dumps(MarkerOnLoad(str(marker)))
    evil = ModelEnvelope("m-runs-code", hashlib.sha256(evil_bytes).hexdigest(), evil_bytes)
    # the control: building this file really runs its code
    control = tmp_path / "control-marker"
    sio.loads(sio.dumps(MarkerOnLoad(str(control))), trusted=[f"{MarkerOnLoad.__module__}.MarkerOnLoad"])
    assert control.exists() and not marker.exists()

    cmd = [*EDGE_APP, "run", "--camera", "Guard", "--repeat", "0", "--delay", "0.01",
           "--metrics-duration", "1", "--bootstrap-servers", kafka.bootstrap_servers, "--topic", events,
           "--model", str(model_path), "--outbox", str(tmp_path / "state" / "o.db"),
           "--models-topic", models, "--allow-unsigned-models"]  # fmt: skip
    edge = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        read_topic(kafka_settings, events, lambda ms: serving in {m.model_version for m in split(ms)[1]})
        for n, env in enumerate((tampered, tree, evil), start=1):
            publish_records(kafka_settings, models, [env.to_record()])
            read_topic(kafka_settings, events, lambda ms, n=n: len(_refused(ms)) >= n, timeout=120)
        # still serving: windows after the last refusal carry the old version
        msgs = read_topic(
            kafka_settings,
            events,
            lambda ms: (
                [m.model_version for m in split(ms)[1]][-3:] == [serving] * 3 and len(_refused(ms)) >= 3
            ),
        )
        edge.send_signal(signal.SIGTERM)
        _, err = edge.communicate(timeout=120)
    finally:
        edge.kill()
    assert edge.returncode == 0, err[-3000:]

    refused = dict(_refused(msgs))
    assert list(refused) == [real.version, "m-foreign-tree", "m-runs-code"], refused
    assert "sha256" in refused[real.version] and "tampered" in refused[real.version]
    assert "allow-list" in refused["m-foreign-tree"] and "DecisionTreeClassifier" in refused["m-foreign-tree"]
    assert "allow-list" in refused["m-runs-code"] and "MarkerOnLoad" in refused["m-runs-code"]
    assert {m.model_version for m in split(msgs)[1]} == {serving}
    assert not marker.exists(), "code from a refused model file ran"

    stats = json.loads(re.sub(r"^.*?done: ", "", [x for x in err.splitlines() if "done: {" in x][-1]))
    assert stats["model_versions"] == [serving]
    assert stats["models_refused"] == [real.version, "m-foreign-tree", "m-runs-code"]
    for version in (real.version, "m-foreign-tree", "m-runs-code"):
        assert err.count(f"refused model {version}:") == 1, "each refusal is logged once"
    assert not list((tmp_path / "state").glob("models-Guard/*.skops")), "nothing refused is kept"
