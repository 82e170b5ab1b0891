"""`metro-app`: run the hub, retrain and list models, manage the hub as a background job, build its archive.

POST /labels and POST /models/retrain need the bearer token from env EDGE_MNIST_API_TOKEN (never a flag).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgemnist.cliargs import env_flag, setup_logging
from edgemnist.errors import ConfigError, EdgeMnistError
from metro_app.jobs import JobRegistry
from metro_app.retrain import RETRAIN_ENV, RetrainSettings, add_retrain_flags
from metro_app.settings import HUB_ENV, HubSettings, add_hub_flags, mask_secrets

__all__ = ["main", "build_parser"]

log = logging.getLogger("metro_app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metro-app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume the topic, store, serve the HTTP API (foreground)")
    add_hub_flags(run)
    add_retrain_flags(run)
    run.set_defaults(func=_run)
    retrain = sub.add_parser(
        "retrain",
        help="train a candidate on base data + stored field labels, judge it, record it, publish if accepted",
        description="Last line of output: the result as JSON.",
    )
    _retrain_arguments(retrain)
    retrain.set_defaults(func=_retrain)
    models = sub.add_parser("models", help="the model registry as a table (or JSON lines)")
    _store_flag(models)
    models.add_argument("--json", action="store_true", help="one JSON object per model, newest first")
    models.set_defaults(func=_models)
    submit = sub.add_parser(
        "submit", help="start the hub as a background job, cancelling an older job of that name"
    )
    submit.add_argument("--name", required=True, help="job name")
    submit.add_argument(
        "--target",
        choices=("local", "streams"),
        default="local",
        help="local: a background process; streams: the streamsx topology on an IBM Streams instance",
    )
    add_hub_flags(submit)
    add_retrain_flags(submit)
    submit.set_defaults(func=_submit)
    jobs = sub.add_parser("jobs", help="list jobs with their health")
    jobs.add_argument("--json", action="store_true", help="one JSON object per job")
    jobs.set_defaults(func=_jobs)
    cancel = sub.add_parser("cancel", help="stop a job cleanly")
    cancel.add_argument("name")
    cancel.set_defaults(func=_cancel)
    build = sub.add_parser("build", help="build the hub's streamsx topology")
    build.add_argument("--target", choices=("streams-archive",), default="streams-archive")
    build.add_argument("--out", required=True, type=Path, help="directory for the build archive")
    add_hub_flags(build)
    build.set_defaults(func=_build)
    for p in (run, retrain, models, submit, jobs, cancel, build):
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _store_flag(parser: argparse.ArgumentParser) -> None:
    [(flag, env, typ, text)] = [row for row in HUB_ENV if row[0] == "--store"]
    env_flag(parser, flag, env, type=typ, help=text)


def _retrain_arguments(parser: argparse.ArgumentParser) -> None:
    _store_flag(parser)
    add_retrain_flags(parser)
    for flag, env, typ, text in HUB_ENV:
        if flag in ("--models-topic", "--model"):
            default = getattr(HubSettings(), flag[2:].replace("-", "_"))
            env_flag(parser, flag, env, default=default, type=typ, help=text)
    parser.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="publish an accepted model on the models topic (needs Kafka) (default: publish)",
    )
    env_flag(parser, "--bootstrap-servers", "EDGE_MNIST_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers")
    env_flag(parser, "--credentials", "EDGE_MNIST_CREDENTIALS", help="JSON credentials file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    env_flag(
        parser,
        "--labels-from-topic",
        "EDGE_MNIST_LABELS_TOPIC",
        help="take the field labels from the labels table's Debezium change topic instead of the store "
        "(images still come from the store), e.g. edge-mnist.cdc.public.labels",
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        default=5.0,
        help="with --labels-from-topic: stop reading after this many quiet seconds (default 5)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        setup_logging(args.verbose)
        return int(args.func(args))
    except EdgeMnistError as exc:
        print(f"metro-app: error: {exc}", file=sys.stderr)
        return 2


def _kafka(args: argparse.Namespace):  # noqa: ANN202 - KafkaSettings lives in edgemnist.settings
    from edgemnist.settings import resolve

    return resolve(bootstrap_servers=args.bootstrap_servers, credentials=args.credentials)


def _run(args: argparse.Namespace) -> int:
    from metro_app.service import run_hub

    settings = HubSettings.from_args(args)
    return run_hub(settings, _kafka(args), RetrainSettings.from_args(args))


def _retrain(args: argparse.Namespace) -> int:
    from metro_app.publish import ModelPublisher
    from metro_app.retrain import retrain
    from metro_app.store import Store

    settings = RetrainSettings.from_args(args)
    publisher = (
        ModelPublisher(_kafka(args), args.models_topic) if args.publish and args.models_topic else None
    )
    labels = None
    if args.labels_from_topic:
        from metro_app.labelstream import labels_from_topic

        labels, stats = labels_from_topic(_kafka(args), args.labels_from_topic, until_idle=args.until_idle)
        print(
            f"{len(labels)} labelled images from {args.labels_from_topic} ({stats['records']} records)",
            file=sys.stderr,
        )
    store = Store(HubSettings(store=args.store or "").store_url)
    try:
        result = retrain(store, settings, publisher=publisher, console=not args.quiet, labels=labels)
    finally:
        if publisher is not None:
            publisher.close()
        store.close()
    print(result.reason, file=sys.stderr)
    print(json.dumps({k: v for k, v in result.to_dict().items() if k not in ("status", "seconds")}
                     | {"status": result.status, "seconds": round(result.seconds, 2)}))  # fmt: skip
    return 1 if result.accepted and publisher is not None and result.status != "published" else 0


def _models(args: argparse.Namespace) -> int:
    from metro_app.store import Store

    store = Store(HubSettings(store=args.store or "").store_url)
    try:
        models = store.models()
    finally:
        store.close()
    if args.json:
        for m in models:
            print(json.dumps({k: v for k, v in m.items() if k != "card"}))
        return 0
    print(
        f"{'version':34} {'status':11} {'parent':34} {'base':>6} {'field':>6} {'p.field':>7} {'n_field':>7}"
    )
    for m in models:
        print(
            f"{m['version']:34} {m['status']:11} {m['parent'] or '-':34} {_pct(m['base_accuracy']):>6} "
            f"{_pct(m['field_accuracy']):>6} {_pct(m['parent_field_accuracy']):>7} {m['n_field_train'] or 0:>7}"
        )
    return 0


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _run_args(args: argparse.Namespace, settings: HubSettings) -> list[str]:
    """The child's flags; the store URL (it may hold a password) goes by env, see `_run_env`."""
    out = [
        "--topic",
        settings.topic,
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--dlq-topic",
        settings.dlq_topic,
        "--max-records",
        str(settings.max_records),
        "--model",
        settings.model,
        "--predict-requests",
        settings.predict_requests,
        "--predict-responses",
        settings.predict_responses,
        "--train-model" if settings.train_model else "--no-train-model",
    ]
    out += ["--models-topic", settings.models_topic, "--control-topic", settings.control_topic]
    for flag, *_ in RETRAIN_ENV:
        out += [flag, str(getattr(args, flag[2:].replace("-", "_")))]
    for flag in ("bootstrap_servers", "credentials"):
        if getattr(args, flag):
            out += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    return out


def _run_env(settings: HubSettings) -> dict[str, str]:
    return {"EDGE_MNIST_STORE": settings.store_url}


def _submit(args: argparse.Namespace) -> int:
    settings = HubSettings.from_args(args)
    if args.target == "streams":
        from metro_app.topology import submit_to_streams

        print(json.dumps(submit_to_streams(settings, args.name, _kafka(args))))
        return 0
    registry = JobRegistry()
    job = registry.submit(
        args.name, _run_args(args, settings), settings.host, settings.port, env=_run_env(settings)
    )
    print(f"job {args.name}: pid {job['pid']}, API http://{settings.host}:{settings.port}, log {job['log']}")
    return 0


def _jobs(args: argparse.Namespace) -> int:
    for job in JobRegistry().list():
        health = job.health() if job.alive() else None
        state = "running" if health else ("starting/unhealthy" if job.alive() else "stopped")
        if args.json:
            print(mask_secrets(json.dumps({**job, "state": state, "health": health})))
            continue
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["started"]))
        extra = (
            f" lag={health['consumer_lag']} stored={health['stored']} dlq={health['dlq']}" if health else ""
        )
        print(f"{job['name']}\t{state}\tpid {job['pid']}\tport {job['port']}\tsince {started}{extra}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    registry = JobRegistry()
    if registry.get(args.name) is None:
        raise ConfigError(f"no job named {args.name!r}")
    stopped = registry.cancel(args.name)
    print(f"job {args.name}: {'stopped' if stopped else 'was not running; removed from the registry'}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from metro_app.topology import build_archive

    path = build_archive(HubSettings.from_args(args), args.out, bootstrap_servers=args.bootstrap_servers)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
