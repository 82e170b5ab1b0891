"""`metro-app submit`, `jobs`, `cancel` and `build`: the hub as a background job or a streamsx topology.

A submitted job is `metro-app run` in a background process with the same flags; its store URL
(which may hold a password) goes by env, never argv.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from edgemnist.cliargs import kafka_settings
from edgemnist.errors import ConfigError
from edgemnist.masking import mask_secrets
from metro_app.deploy.jobs import JobRegistry
from metro_app.settings import HubSettings, add_hub_flags
from metro_app.training.settings import RETRAIN_ENV, add_retrain_flags

__all__ = ["add_job_parsers"]


def add_job_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """`submit`, `jobs`, `cancel` and `build`: the hub as a background job."""
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
    return [submit, jobs, cancel, build]


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
    if settings.signing_key:
        out += ["--signing-key", settings.signing_key]  # a path; the key itself stays in its file
    out += ["--public-reads" if settings.public_reads else "--no-public-reads"]
    for flag in ("tokens", "tls_cert", "tls_key"):  # paths, not secrets: the key file stays 0600
        if getattr(settings, flag):
            out += [f"--{flag.replace('_', '-')}", getattr(settings, flag)]
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
        from metro_app.deploy.topology import submit_to_streams

        print(json.dumps(submit_to_streams(settings, args.name, kafka_settings(args))))
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
    from metro_app.deploy.topology import build_archive

    path = build_archive(HubSettings.from_args(args), args.out, bootstrap_servers=args.bootstrap_servers)
    print(path)
    return 0
