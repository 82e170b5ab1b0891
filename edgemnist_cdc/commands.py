"""The ``db``, ``cdc`` and ``evaluate`` subcommands, and ``train --from-topic``: digits in PostgreSQL, via Debezium.

`edge-mnist` finds them through the ``edgemnist.commands`` entry points (``DB``, ``CDC``, ``EVALUATE``,
``TRAIN_FROM_TOPIC``), so the core never imports this package.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from edgemnist import topics
from edgemnist.cli import Command
from edgemnist.cliargs import add_kafka_flags, env_flag, kafka_settings
from edgemnist.errors import ConfigError

__all__ = [
    "CDC",
    "DB",
    "EVALUATE",
    "TRAIN_FROM_TOPIC",
    "cdc_arguments",
    "db_arguments",
    "evaluate_arguments",
    "run_cdc",
    "run_db",
    "run_evaluate",
    "train_from_topic",
]


def _url_flag(parser: argparse.ArgumentParser) -> None:
    env_flag(
        parser,
        "--url",
        "EDGE_MNIST_DB_URL",
        help="PostgreSQL URL postgresql://USER[:PASSWORD]@HOST[:PORT]/DB",
    )


def _need_url(args: argparse.Namespace) -> str:
    if not args.url:
        raise ConfigError("--url (or env EDGE_MNIST_DB_URL) is required: postgresql://USER@HOST:PORT/DB")
    return str(args.url)


# ----- db ------------------------------------------------------------------------------------------


def db_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    load = sub.add_parser("load", help="create mnist_train and mnist_test and fill them (idempotent)")
    _url_flag(load)
    load.add_argument(
        "--data", default="bundled", help="bundled, mnist-idx:DIR or openml [default: %(default)s]"
    )
    load.add_argument(
        "--test-later", action="store_true", help="leave mnist_test empty (fill it with insert-test)"
    )
    load.add_argument("--limit", type=int, default=None, help="at most this many rows per table")
    insert = sub.add_parser("insert-test", help="insert the held-out rows into mnist_test at a steady rate")
    _url_flag(insert)
    insert.add_argument(
        "--data", default="bundled", help="bundled, mnist-idx:DIR or openml [default: %(default)s]"
    )
    insert.add_argument("--rate", type=float, default=100.0, help="rows per second [default: %(default)s]")
    insert.add_argument("--burst", type=int, default=50, help="rows per transaction [default: %(default)s]")
    insert.add_argument("--limit", type=int, default=None, help="at most this many rows")


def run_db(args: argparse.Namespace) -> int:
    from edgemnist_cdc import digitdb

    _need_url(args)
    if args.db_command == "load":
        result = digitdb.load(args.url, args.data, test_later=args.test_later, limit=args.limit)
        new = ", ".join(f"{t} +{n}" for t, n in result["added"].items())
        rows = ", ".join(f"{t} {n}" for t, n in result["rows"].items())
        print(f"loaded {args.data}: {new}; rows now: {rows}", file=sys.stderr)
        print(json.dumps(result))
        return 0

    def burst(done: int, added: int) -> None:
        print(f"inserted {done} rows ({added} new)", file=sys.stderr, flush=True)

    inserted = digitdb.insert_test(
        args.url, args.data, rate=args.rate, burst=args.burst, limit=args.limit, on_burst=burst
    )
    print(json.dumps({"table": "mnist_test", "added": inserted}))
    return 0


# ----- cdc -----------------------------------------------------------------------------------------


def cdc_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cdc_command", metavar="ACTION", required=True)
    start = sub.add_parser(
        "start", help="start the Connect worker if needed, add the Debezium connector, wait RUNNING"
    )
    _url_flag(start)
    start.add_argument(
        "--tables", default="mnist_train,mnist_test", help="tables to capture [default: %(default)s]"
    )
    env_flag(
        start,
        "--store",
        "EDGE_MNIST_STORE",
        help="the hub store: when PostgreSQL, its labels table is captured too",
    )
    start.add_argument(
        "--name", default="edge-mnist", help="connector name (and replication slot) [default: %(default)s]"
    )
    start.add_argument(
        "--topic-prefix", default=topics.CDC_PREFIX, help="Debezium topic.prefix [default: %(default)s]"
    )
    start.add_argument(
        "--port", type=int, default=0, help="worker REST port on 127.0.0.1 [default: a free one]"
    )
    start.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for RUNNING [default: %(default)s]"
    )
    add_kafka_flags(start)
    status = sub.add_parser("status", help="the worker and its connectors")
    status.add_argument("--json", action="store_true", help="one JSON object")
    stop = sub.add_parser("stop", help="stop the worker (or, with --name, remove one connector)")
    stop.add_argument("--name", default=None, help="remove only this connector; the worker keeps running")
    stop.add_argument(
        "--drop-slot",
        action="store_true",
        help="with --name and --url: also drop the connector's replication slot and publication in that "
        "database (else PostgreSQL keeps WAL for the slot until it is dropped)",
    )
    _url_flag(stop)
    for p in (start, status, stop):
        env_flag(p, "--worker-url", "EDGE_MNIST_CONNECT_URL",
                 help="use the Kafka Connect worker you already run (its REST URL) instead of starting one")  # fmt: skip


def _worker(args: argparse.Namespace):  # noqa: ANN202 - ConnectWorker
    from edgemnist_cdc.connect import ConnectWorker

    return ConnectWorker(external_url=args.worker_url)


def run_cdc(args: argparse.Namespace) -> int:
    from edgemnist_cdc.debezium import specs_for

    worker = _worker(args)
    if args.cdc_command == "start":
        _need_url(args)
        tables = [t.strip() for t in args.tables.split(",") if t.strip()]
        if not tables:
            raise ConfigError("--tables names no table")
        specs = specs_for(args.name, args.url, tables, args.topic_prefix, args.store)
        from edgemnist.kafka.settings import KafkaSettings

        kafka = KafkaSettings() if args.worker_url else kafka_settings(args)
        state = worker.start(kafka, port=args.port)
        print(f"Connect worker pid {state['pid']} on {worker.url} (log {state['log']})", file=sys.stderr)
        topics: dict[str, str] = {}
        for spec in specs:
            worker.put_connector(spec)
            status = worker.wait_running(spec.name, args.timeout)
            print(f"connector {spec.name}: {status['connector']['state']}, version {status['connector'].get('version')}",
                  file=sys.stderr)  # fmt: skip
            for table, topic in spec.topics().items():
                print(f"  {table} -> topic {topic}", file=sys.stderr)
            topics |= spec.topics()
        print(json.dumps({"worker": worker.url, "pid": state["pid"], "connectors": [s.name for s in specs],
                          "topics": topics, "bootstrap_servers": state["bootstrap_servers"]}))  # fmt: skip
        return 0
    if args.cdc_command == "status":
        return _status(worker, args.json)
    if args.drop_slot and not args.name:
        raise ConfigError("--drop-slot needs --name: the connector whose slot to drop")
    if args.name:
        from edgemnist_cdc.debezium import ConnectorSpec

        worker.delete_connector(args.name)
        slot = ConnectorSpec(args.name, "", (), "").slot
        if not args.drop_slot:
            print(f"connector {args.name} removed (its replication slot {slot} stays in the database: "
                  "--drop-slot --url URL drops it)")  # fmt: skip
            return 0
        from edgemnist_cdc import digitdb

        dropped = digitdb.drop_slot(_need_url(args), slot)
        print(f"connector {args.name} removed; replication slot {slot} "
              f"{'dropped' if dropped['slot'] else 'was not there'}, publication {slot}_pub "
              f"{'dropped' if dropped['publication'] else 'was not there'}")  # fmt: skip
        return 0
    print("Connect worker stopped" if worker.stop() else "no Connect worker was running")
    return 0


def _status(worker: Any, as_json: bool) -> int:
    if not worker.alive():
        print(
            json.dumps({"running": False}) if as_json else f"no Connect worker running ({worker.state_path})"
        )
        return 1
    external = {"pid": None, "bootstrap_servers": "(its own)", "log": "(its own)"}
    state = external if worker.external_url else (worker.state() or {})
    connectors = {name: worker.status(name) for name in worker.connectors()}
    if as_json:
        print(json.dumps({"running": True, "worker": worker.url, **state, "connectors": connectors}))
        return 0
    print(
        f"Connect worker pid {state['pid']} on {worker.url}, Kafka {state['bootstrap_servers']}, log {state['log']}"
    )
    for name, status in connectors.items():
        tasks = ", ".join(t["state"] for t in status.get("tasks", [])) or "no task"
        print(f"  {name}: {status['connector']['state']} (task: {tasks})")
    return 0


# ----- train / evaluate from a topic -------------------------------------------------------------------


def train_from_topic(args: argparse.Namespace) -> int:
    """`edge-mnist train --from-topic`: the table as the change stream says it is, then the usual training."""
    from edgemnist.data import load_training
    from edgemnist.model import Model, evaluate, save_model, train_model
    from edgemnist_cdc.events import digits_dataset, training_digest
    from edgemnist_cdc.stream import read_view

    view, stats = read_view(kafka_settings(args), args.from_topic, until_idle=args.until_idle)
    if not len(view):
        raise ConfigError(f"topic {args.from_topic!r}: the table it describes has no rows")
    train, ids = digits_dataset(f"topic:{args.from_topic}", view)
    digest = training_digest(ids, train)
    print(
        f"{args.from_topic}: {len(train)} rows after {stats['records']} records {stats['ops']}",
        file=sys.stderr,
    )
    _, held_out = load_training(args.data)
    estimator = train_model(train, seed=args.seed, progress=not args.quiet)
    metrics = evaluate(Model(estimator, "unsaved", ""), held_out, args.confidence)
    training_set = {"topic": args.from_topic, "rows": len(train), "sha256": digest, **stats}
    model_path, _ = save_model(
        estimator, args.out, dataset=f"topic:{args.from_topic}", n_train=len(train), n_test=int(metrics["n"]),
        accuracy=metrics["accuracy"], uncertain_share=metrics["uncertain_share"], confidence=args.confidence,
        extra={"seed": args.seed, "held_out": held_out.name, "training_set": training_set},
    )  # fmt: skip
    print(f"held-out accuracy ({held_out.name}): {metrics['accuracy']:.4f}", file=sys.stderr)
    print(json.dumps({"model": str(model_path), "accuracy": metrics["accuracy"], "held_out": held_out.name,
                      "training_set": training_set}))  # fmt: skip
    return 0


def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-topic", required=True, help="Debezium change topic of a digit table")
    parser.add_argument("--model", default="models", help="model file or directory [default: %(default)s]")
    parser.add_argument("--follow", action="store_true", help="keep scoring rows as they arrive")
    parser.add_argument("--until-idle", type=float, default=None,
                        help="stop after this many seconds without new records (default: with --follow, never; "
                             "without, 5)")  # fmt: skip
    parser.add_argument("--max-rows", type=int, default=None, help="stop once this many rows are scored")
    parser.add_argument(
        "--wait-for-topic", type=float, default=60.0, help="seconds to wait for the topic to exist"
    )
    add_kafka_flags(parser)


def run_evaluate(args: argparse.Namespace) -> int:
    """Running accuracy and log loss after each batch (stderr), a final JSON line (stdout)."""
    from edgemnist.model import load_model
    from edgemnist_cdc.evaluate import StreamEvaluator
    from edgemnist_cdc.stream import ChangeReader

    model = load_model(Path(args.model))
    until_idle = args.until_idle if args.until_idle is not None else (None if args.follow else 5.0)
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    evaluator = StreamEvaluator(model)

    def stop() -> bool:
        return bool(stopping) or (args.max_rows is not None and evaluator.summary()["count"] >= args.max_rows)

    with ChangeReader(kafka_settings(args), args.from_topic, wait_for_topic=args.wait_for_topic) as reader:
        for batch in reader.batches(until_idle=until_idle, stop=stop):
            evaluator(batch)
            s = evaluator.summary()
            print(f"batch {s['batches']}: {len(batch)} changes, {s['count']} rows, accuracy {s['accuracy']:.4f}, "
                  f"log loss {s['log_loss']:.4f}", file=sys.stderr, flush=True)  # fmt: skip
        skipped = sum(reader.bad.values())
    print(json.dumps({"topic": args.from_topic, **evaluator.summary(), "skipped": skipped}), flush=True)
    return 0


DB = Command("MNIST digits in PostgreSQL: load the tables, insert test rows", db_arguments, run_db)
CDC = Command(
    "Kafka Connect + Debezium: stream the digit tables (and the hub's labels) to Kafka",
    cdc_arguments,
    run_cdc,
)
EVALUATE = Command(
    "score a model on a digit table's change topic: running accuracy and log loss",
    evaluate_arguments,
    run_evaluate,
)
TRAIN_FROM_TOPIC = Command("train --from-topic", lambda _parser: None, train_from_topic)
