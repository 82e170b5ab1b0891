"""Training data in PostgreSQL, streamed to Kafka by Debezium: train and evaluate from the change stream.

Real parts only: PostgreSQL with wal_level=logical (the `postgres` fixture), Apache Kafka (`kafka`),
and one Kafka Connect worker running Debezium's PostgreSQL connector (`connect_worker`). Each test
has its own database and connector (its own slot and topic prefix) on the shared worker, driven
through the real CLIs: `edge-mnist db ...`, `edge-mnist cdc start`, `edge-mnist train --from-topic`,
`edge-mnist evaluate --from-topic --follow`, `metro-app retrain --labels-from-topic`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemnist.data import load_bundled
from edgemnist.model import Model, evaluate, load_model, prepared_dataset, train_model
from edgemnist_cdc.digitdb import connect, read_table
from edgemnist_cdc.events import digits_dataset, training_digest
from edgemnist_cdc.labels import labels_from_topic
from edgemnist_cdc.stream import read_view
from metro_app.store import Store
from metro_app.training.fieldset import build_field_set
from tests.helpers import topic_prefix
from tests.loop_data import rotated_uncertain

pytestmark = pytest.mark.integration


def _cli(module: str, *args: str, env: dict[str, str], timeout: float = 300) -> dict[str, Any]:
    """Run a console command; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{module} {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _edge_mnist(*args: str, env: dict[str, str], timeout: float = 300) -> dict[str, Any]:
    return _cli("edgemnist.cli", *args, env=env, timeout=timeout)


def _start_cdc(connect_worker, url: str, name: str, *extra: str) -> dict[str, Any]:
    out = _edge_mnist("cdc", "start", "--url", url, "--name", name, "--topic-prefix", name, *extra,
                      env=connect_worker.env())  # fmt: skip
    assert name in out["connectors"]
    return out


def _wait_view(kafka_settings, topic: str, ok, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    """Read the topic again until the view satisfies ``ok`` (the stream lags the database by a little)."""
    deadline = time.monotonic() + timeout
    while True:
        view, stats = read_view(kafka_settings, topic, until_idle=1.0)
        if ok(view) or time.monotonic() > deadline:
            return view, stats


@pytest.fixture(scope="module")
def main_db(postgres, connect_worker) -> dict[str, Any]:
    """4,000 training rows loaded, the test table left empty, the connector RUNNING."""
    url = postgres.fresh_database("cdc_main")
    loaded = _edge_mnist("db", "load", "--url", url, "--test-later", env=connect_worker.env())
    assert loaded["rows"] == {"mnist_train": 4000, "mnist_test": 0}
    again = _edge_mnist("db", "load", "--url", url, "--test-later", env=connect_worker.env())
    assert again["added"] == {"mnist_train": 0} and again["rows"]["mnist_train"] == 4000  # idempotent
    prefix = topic_prefix("cdc-main")
    started = _start_cdc(connect_worker, url, prefix)
    assert started["topics"] == {
        "mnist_train": f"{prefix}.public.mnist_train",
        "mnist_test": f"{prefix}.public.mnist_test",
    }
    return {"url": url, "name": prefix, **started}


def test_train_from_stream_equals_table_and_follow_evaluation_equals_offline(
    main_db, connect_worker, kafka_settings, tmp_path: Path
) -> None:
    env = connect_worker.env()
    out = _edge_mnist("train", "--from-topic", main_db["topics"]["mnist_train"], "--until-idle", "3",
                      "--out", str(tmp_path / "models"), "--quiet", env=env)  # fmt: skip
    table_rows = read_table(main_db["url"], "mnist_train")
    table_set, table_ids = digits_dataset("table", table_rows)
    assert out["training_set"]["rows"] == 4000
    assert out["training_set"]["ops"]["r"] == 4000  # all of it came from the snapshot phase
    assert out["training_set"]["sha256"] == training_digest(table_ids, table_set)

    stream_model = load_model(out["model"])
    table_model = Model(train_model(table_set, progress=False), "from-table", "")
    test = load_bundled("stream")  # what `db insert-test` inserts (--data bundled)
    acc_stream = evaluate(stream_model, test)["accuracy"]
    acc_table = evaluate(table_model, test)["accuracy"]
    assert acc_stream >= 0.95
    assert abs(acc_stream - acc_table) <= 0.005

    follow = subprocess.Popen(
        [sys.executable, "-m", "edgemnist.cli", "evaluate", "--from-topic", main_db["topics"]["mnist_test"],
         "--follow", "--model", out["model"], "--max-rows", "1000", "--wait-for-topic", "120"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        inserted = _edge_mnist("db", "insert-test", "--url", main_db["url"], "--rate", "400", "--burst", "100",
                               env=env)  # fmt: skip
        assert inserted["added"] == 1000
        stdout, stderr = follow.communicate(timeout=180)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert follow.returncode == 0, stderr
    final = json.loads(stdout.strip().splitlines()[-1])
    running = [line for line in stderr.splitlines() if line.startswith("batch ")]
    assert final["count"] == 1000 and final["scored"] == 1000
    assert len(running) == final["batches"] >= 2  # a running figure after each batch, more than one batch

    offline = evaluate(stream_model, test)
    assert final["accuracy"] == pytest.approx(offline["accuracy"], abs=1e-12)
    images, labels = prepared_dataset(test)
    proba = stream_model.predict_proba(images)
    log_loss = float(np.mean(-np.log(np.clip(proba[np.arange(len(labels)), labels], 1e-15, 1))))
    assert final["log_loss"] == pytest.approx(log_loss, rel=1e-9)


def test_update_and_delete_reach_the_trainer(
    postgres, connect_worker, kafka_settings, tmp_path: Path
) -> None:
    url = postgres.fresh_database("cdc_edit")
    env = connect_worker.env()
    _edge_mnist("db", "load", "--url", url, "--limit", "300", env=env)
    topic = _start_cdc(connect_worker, url, topic_prefix("cdc-edit"))["topics"]["mnist_train"]
    with connect(url) as conn:
        old = conn.execute("SELECT label FROM mnist_train WHERE id = 5").fetchone()[0]
        conn.execute("UPDATE mnist_train SET label = %s WHERE id = 5", ((old + 1) % 10,))
        conn.execute("DELETE FROM mnist_train WHERE id = 7")
        conn.commit()

    view, stats = _wait_view(kafka_settings, topic, lambda v: len(v) == 299)
    rows = {r["id"]: r for r in view}
    assert 7 not in rows and rows[5]["label"] == (old + 1) % 10
    assert stats["ops"]["u"] == 1 and stats["ops"]["d"] == 1 and stats["ops"]["t"] == 1

    out = _edge_mnist("train", "--from-topic", topic, "--until-idle", "2", "--out", str(tmp_path), "--quiet",
                      env=env)  # fmt: skip
    table_set, ids = digits_dataset("table", read_table(url, "mnist_train"))
    assert out["training_set"]["rows"] == 299
    assert out["training_set"]["sha256"] == training_digest(ids, table_set)  # updated label, no deleted row
    card = json.loads(Path(out["model"]).with_suffix(".json").read_text())
    assert card["n_train"] == 299 and card["training_set"]["ops"]["u"] == 1


def test_hub_labels_in_postgres_stream_to_the_labels_topic_and_retrain_from_it(
    postgres, connect_worker, kafka_settings, model_path: Path
) -> None:
    url = postgres.fresh_database("cdc_hub")
    env = connect_worker.env()
    store = Store(url)
    images = rotated_uncertain(model_path, 40)
    store.write_batch([], images)
    for img in images[:25]:  # labelled before the connector starts: the snapshot carries them
        store.add_label(img.id, str(img.true_class), "alice")
    _edge_mnist("db", "load", "--url", url, "--limit", "50", env=env)
    prefix = topic_prefix("cdc-hub")
    started = _start_cdc(connect_worker, url, prefix, "--store", url)  # default tables + the store's labels
    topic = started["topics"]["labels"]
    assert topic == f"{prefix}.public.labels" and "mnist_train" in started["topics"]
    for img in images[25:]:  # labelled while streaming
        store.add_label(img.id, str(img.true_class), "bob")
    store.add_label(images[0].id, "Not a Digit", "alice")  # she corrects herself: her newest label counts
    store.add_label(images[1].id, str((images[1].true_class + 1) % 10), "alice")
    store.add_label(images[2].id, str((images[2].true_class + 1) % 10), "carol")  # disagrees: a conflict
    n_label_rows = len(store.labels(limit=10_000))

    view, _ = _wait_view(kafka_settings, topic, lambda v: len(v) == n_label_rows)
    assert len(view) == n_label_rows == 43
    by_id = {r["id"]: r for r in view}
    for label in store.labels(limit=10_000):
        assert (by_id[label["id"]]["image_id"], by_id[label["id"]]["label"]) == (
            label["image_id"],
            label["label"],
        )

    labels, _ = labels_from_topic(kafka_settings, topic, until_idle=1.0)
    from_topic = build_field_set(store.frames_for(labels))
    from_store = build_field_set(store.latest_labels())
    assert from_topic.train_ids == from_store.train_ids and from_topic.test_ids == from_store.test_ids
    assert np.array_equal(from_topic.train_labels, from_store.train_labels)
    assert np.array_equal(from_topic.train_images, from_store.train_images)
    assert from_topic.excluded == from_store.excluded == {"Not a Digit": 1, "conflict": 1}
    store.close()

    common = ["retrain", "--store", url, "--model", str(model_path), "--no-publish", "-q"]
    via_topic = _cli("metro_app.cli", *common, "--labels-from-topic", topic, "--until-idle", "1", env=env)
    via_store = _cli("metro_app.cli", *common, env=env)
    for key in ("n_field_train", "n_field_test", "n_train", "field_accuracy", "base_accuracy"):
        assert via_topic[key] == via_store[key], key
    assert via_topic["n_field_train"] + via_topic["n_field_test"] == 38  # 40 images: a non-digit, a conflict
    store = Store(url)
    cards = {
        m["version"]: json.loads(m["card"]) if isinstance(m["card"], str) else m["card"]
        for m in store.models()
    }
    store.close()
    assert cards[via_topic["version"]]["field_test_ids"] == cards[via_store["version"]]["field_test_ids"]


def test_cdc_status_lists_the_connectors_and_stop_removes_one(connect_worker, main_db) -> None:
    env, name = connect_worker.env(), main_db["name"]
    status = _edge_mnist("cdc", "status", "--json", env=env)
    assert status["running"] and status["connectors"][name]["connector"]["state"] == "RUNNING"
    assert status["connectors"][name]["tasks"][0]["state"] == "RUNNING"
    slot = name.replace("-", "_")

    def slots() -> set[str]:
        with connect(main_db["url"]) as conn:
            return {r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()}

    assert slot in slots()
    # the URL (with its password) from env, never argv
    proc = subprocess.run([sys.executable, "-m", "edgemnist.cli", "cdc", "stop", "--name", name, "--drop-slot"],
                          env={**env, "EDGE_MNIST_DB_URL": main_db["url"]}, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"replication slot {slot} dropped, publication {slot}_pub dropped" in proc.stdout
    assert name not in _edge_mnist("cdc", "status", "--json", env=env)["connectors"]
    assert slot not in slots()  # PostgreSQL no longer keeps WAL for the removed connector
