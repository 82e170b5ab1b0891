"""`edge-app`: run a camera's edge pipeline against Kafka (or print its messages with --dry-run)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from edge_app.outbox import Outbox
from edge_app.runner import OutboxSink, RunStats, StdoutSink, run_edge
from edge_app.sender import Sender
from edge_app.settings import EdgeSettings, add_edge_flags
from edgemnist.cliargs import env_flag, setup_logging
from edgemnist.errors import EdgeMnistError

__all__ = ["main", "build_parser"]

log = logging.getLogger("edge_app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="score a camera's images; send metrics and uncertain images to Kafka",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_edge_flags(run)
    env_flag(
        run,
        "--bootstrap-servers",
        "EDGE_MNIST_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers, host:port[,host:port]",
    )
    env_flag(
        run,
        "--credentials",
        "EDGE_MNIST_CREDENTIALS",
        help="JSON credentials file (IBM Event Streams format: kafka_brokers_sasl, user, api_key)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print each message as one JSON line on stdout instead of sending it",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)
    build = sub.add_parser(
        "build",
        help="build the edge as a streamsx application (IBM Streams build archive)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_edge_flags(build)
    build.add_argument(
        "--target", choices=["streams-archive"], default="streams-archive", help="what to build"
    )
    build.add_argument("--out", default="build", help="directory for the archive")
    build.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    build.set_defaults(func=_build)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        setup_logging(args.verbose)
        return int(args.func(args))
    except EdgeMnistError as exc:
        print(f"edge-app: error: {exc}", file=sys.stderr)
        return 2


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("signal %d: finishing the current batch and the metrics window", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _run(args: argparse.Namespace) -> int:
    settings = EdgeSettings.from_args(args)
    stop = threading.Event()
    _stop_on_signals(stop)
    if settings.dry_run:
        stats = run_edge(settings, StdoutSink(), stop)
        _summary(stats, pending=0)
        return 0
    from edgemnist.kafka import EventProducer, check_access
    from edgemnist.settings import resolve

    kafka = resolve(bootstrap_servers=args.bootstrap_servers, credentials=args.credentials)
    log.info("Kafka %s, topic %s, outbox %s", kafka.masked(), settings.topic, settings.outbox_path)
    check_access(kafka)  # a refused login or a TLS port exits now; an unreachable broker is buffered for
    max_bytes = int(settings.outbox_max_mb * 2**20)
    with (
        Outbox(settings.outbox_path, max_bytes) as outbox,
        Sender(outbox, settings.topic, lambda: EventProducer(kafka)) as sender,
    ):
        stats = run_edge(settings, OutboxSink(outbox), stop)
        timeout = 10.0 if stop.is_set() else settings.drain_timeout
        drained = sender.drain(timeout)
        _summary(stats, pending=outbox.pending)
        if not drained:
            log.error(
                "%d messages not yet acknowledged by Kafka stay in the outbox %s; "
                "they are sent when this edge runs again",
                outbox.pending,
                settings.outbox_path,
            )
            return 3
    return 0


def _build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge_app.topology import build_archive, build_topology

    archive = build_archive(build_topology(EdgeSettings.from_args(args)), Path(args.out))
    print(archive)
    return 0


def _summary(stats: RunStats, pending: int) -> None:
    log.info("done: %s", json.dumps({**stats.to_dict(), "outbox_pending": pending}))


if __name__ == "__main__":
    sys.exit(main())
