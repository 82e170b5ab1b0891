"""A running edge with trusted keys serves only models the hub signed.

Real Apache Kafka, the edge as a separate process. A model crafted by hand (a valid skops
file of an allowed type with its correct sha256) is produced straight to the models topic,
once unsigned and once signed by a key the edge does not trust: both are refused, reported
in `model_refused` with the reason, and the old model keeps serving. The same model
published by the hub (`metro-app rollback`, signing with `--signing-key`) is served.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from edgemnist.kafka import ensure_topics
from edgemnist.model import load_model
from edgemnist.signing import SigningKey, init_keys
from metro_app.store import Store
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
METRO_APP = [sys.executable, "-m", "metro_app.cli"]


def _refused(msgs: list) -> list[tuple[str, str]]:
    return [(r.version, r.reason) for m in split(msgs)[1] for r in (m.model_refused or ())]


def test_only_models_signed_by_a_trusted_key_are_served(
    kafka, kafka_settings, model_path, tmp_path, make_topic
):
    events, models = make_topic("events"), make_topic("models")
    ensure_topics(kafka_settings, {events: 1})
    create_models_topic(kafka_settings, models)
    serving = load_model(model_path).version
    hub_key = init_keys(tmp_path / "keys")
    new_path = train_small_model(tmp_path / "new")
    new = model_envelope(new_path, parent=serving)
    unsigned = new
    untrusted = model_envelope(new_path, targets=("Guard",), parent=serving).signed(SigningKey.generate())

    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.add_model(new.version, new.sha256, new.data, parent=serving, reason="accepted")
    store.close()

    cmd = [*EDGE_APP, "run", "--camera", "Guard", "--repeat", "0", "--delay", "0.01",
           "--metrics-duration", "1", "--bootstrap-servers", kafka.bootstrap_servers, "--topic", events,
           "--model", str(model_path), "--outbox", str(tmp_path / "state" / "o.db"),
           "--models-topic", models, "--trusted-keys", str(tmp_path / "keys" / "hub.pub")]  # fmt: skip
    edge = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        read_topic(kafka_settings, events, lambda ms: serving in {m.model_version for m in split(ms)[1]})
        for n, env in enumerate((unsigned, untrusted), start=1):
            publish_records(kafka_settings, models, [env.to_record()])
            read_topic(kafka_settings, events, lambda ms, n=n: len(_refused(ms)) >= n, timeout=120)
        still = read_topic(
            kafka_settings,
            events,
            lambda ms: (
                [m.model_version for m in split(ms)[1]][-3:] == [serving] * 3 and len(_refused(ms)) >= 2
            ),
        )
        hub = subprocess.run(
            [*METRO_APP, "rollback", new.version, "--cameras", "Guard", "--store",
             f"sqlite:///{tmp_path / 'hub.db'}", "--models-topic", models,
             "--bootstrap-servers", kafka.bootstrap_servers,
             "--signing-key", str(tmp_path / "keys" / "hub.key"), "--force"],  # a candidate: never served
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert hub.returncode == 0, hub.stderr[-3000:]
        assert hub_key.key_id in hub.stderr and "PRIVATE KEY" not in hub.stdout + hub.stderr
        msgs = read_topic(
            kafka_settings,
            events,
            lambda ms: new.version in {m.model_version for m in split(ms)[1]},
            timeout=120,
        )
        edge.send_signal(signal.SIGTERM)
        _, err = edge.communicate(timeout=120)
    finally:
        edge.kill()
    assert edge.returncode == 0, err[-3000:]

    refused = _refused(msgs)
    assert [v for v, _ in refused] == [new.version, new.version], refused
    assert refused[0][1].startswith("unsigned"), refused
    assert refused[1][1].startswith("unknown key") and untrusted.signature.key in refused[1][1], refused
    assert {m.model_version for m in split(still)[1]} == {serving}, "the old model kept serving"
    assert "serving only models signed by one of 1 key(s)" in err
    assert err.count(f"refused model {new.version}: unsigned") == 1
    assert err.count(f"refused model {new.version}: unknown key") == 1
    stats = json.loads(re.sub(r"^.*?done: ", "", [x for x in err.splitlines() if "done: {" in x][-1]))
    assert stats["model_versions"] == [serving, new.version]
    saved = json.loads((tmp_path / "state" / "models-Guard" / f"{new.version}.json").read_text())
    assert saved["signature"]["key"] == hub_key.key_id  # the edge keeps the signature with the model
