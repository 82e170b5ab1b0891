"""`edge-app`: run a camera's edge pipeline against Kafka (or print its messages with --dry-run)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType

from edge_app.outbox import RESULT, Outbox
from edge_app.push import PushFeed
from edge_app.results import ResultsSink, ResultWriter
from edge_app.runner import RunStats, Tap, run_edge
from edge_app.sender import Sender
from edge_app.settings import SUMMARY_ENV, EdgeSettings, add_edge_flags
from edge_app.sinks import OutboxSink, Sink, StdoutSink
from edge_app.stages import camera_name
from edgemnist.cliargs import CommandParser, env_flag, run_command, setup_logging
from edgemnist.errors import ConfigError, EdgeMnistError
from edgemnist.runsummary import write_summary

__all__ = ["main", "build_parser"]

log = logging.getLogger("edge_app")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="edge-app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="score a camera's images; send metrics and uncertain images to Kafka",
    )
    add_edge_flags(run)
    _kafka_flags(run)
    env_flag(
        run,
        "--summary",
        SUMMARY_ENV,
        help="when the run ends, append its summary (scored, sent, dropped, outbox pending) to this file "
        "as one JSON line",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print each message as one JSON line on stdout instead of sending it",
    )
    run.add_argument(
        "--http-no-auth",
        action="store_true",
        help="HTTP push without a bearer token, for a closed network only (by default pushes need "
        "EDGE_MNIST_EDGE_TOKEN, or the token generated and printed at start)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)
    build = sub.add_parser(
        "build",
        help="build the edge as a streamsx application (IBM Streams build archive)",
    )
    add_edge_flags(build)
    _kafka_flags(build)  # read by the Outbox operator when the job starts; nothing secret is archived
    build.add_argument(
        "--target", choices=["streams-archive"], default="streams-archive", help="what to build"
    )
    build.add_argument("--out", default="build", help="directory for the archive")
    build.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    build.set_defaults(func=_build)
    return parser


def _kafka_flags(parser: argparse.ArgumentParser) -> None:
    env_flag(
        parser,
        "--bootstrap-servers",
        "EDGE_MNIST_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers, host:port[,host:port]",
    )
    env_flag(
        parser,
        "--credentials",
        "EDGE_MNIST_CREDENTIALS",
        help="JSON credentials file (IBM Event Streams format: kafka_brokers_sasl, user, api_key)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`edge-app`; errors print one line and exit 2 (edgemnist.cliargs.run_command)."""
    try:
        args = build_parser().parse_args(argv)
    except EdgeMnistError as exc:  # a bad EDGE_MNIST_* value, found while reading the env defaults
        print(f"edge-app: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.verbose)
    return run_command("edge-app", args, args.func)


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
    if settings.distort:
        log.info("distorting every image by %s (labels kept)", settings.distort)
    if settings.dry_run:
        if settings.models_topic:
            log.info("--dry-run: not following the models topic %s", settings.models_topic)
        if settings.results_topic:
            raise ConfigError(
                "--results-topic sends to Kafka through the outbox; it cannot go with --dry-run"
            )
        out = StdoutSink()
        with _http(settings) as feed, _metrics(settings, out) as live:
            stats = run_edge(settings, out, stop, feed=feed, taps=[feed] if feed else [], stats=live)
        _summary(stats, 0, args.summary)
        return 0
    from edgemnist.kafka import EventProducer, TopicReader, check_access
    from edgemnist.kafka.settings import resolve

    kafka = resolve(bootstrap_servers=args.bootstrap_servers, credentials=args.credentials)
    log.info("Kafka %s, topic %s, outbox %s", kafka.masked(), settings.topic, settings.outbox_path)
    check_access(kafka)  # a refused login or a TLS port exits now; an unreachable broker is buffered for
    max_bytes = int(settings.outbox_max_mb * 2**20)
    routes = {RESULT: settings.results_topic} if settings.results_topic else {}
    with (
        Outbox(settings.outbox_path, max_bytes) as outbox,
        Sender(outbox, settings.topic, lambda: EventProducer(kafka), topics=routes) as sender,
        _http(settings) as feed,
    ):
        models = None
        if settings.models_topic:
            topic = settings.models_topic
            models = lambda: TopicReader(kafka, topic)  # noqa: E731
            log.info("following models topic %s; accepted models go to %s", topic, settings.models_dir)
        sink: Sink = OutboxSink(outbox)
        taps: list[Tap] = [feed] if feed else []
        if settings.results_topic:
            results = ResultWriter(outbox, sender, stop, settings.drain_timeout)
            sink, taps = ResultsSink(sink, results), [*taps, results]
            log.info("results topic %s: one result per scored image", settings.results_topic)
        with _metrics(settings, sink) as live:
            stats = run_edge(settings, sink, stop, models, feed=feed, taps=taps, stats=live)
        timeout = 10.0 if stop.is_set() else settings.drain_timeout
        drained = sender.drain(timeout)
        _summary(stats, outbox.pending, args.summary)
        if not drained:
            log.error(
                "%d messages not yet acknowledged by Kafka stay in the outbox %s; "
                "they are sent when this edge runs again",
                outbox.pending,
                settings.outbox_path,
            )
            return 3
    return 0


@contextlib.contextmanager
def _http(settings: EdgeSettings) -> Iterator[PushFeed | None]:
    """With --http-port, a PushFeed served over HTTP for the run; pushes left unanswered fail at the end."""
    if settings.http_port is None:
        yield None
        return
    from edge_app.http import EdgeHttp

    feed = PushFeed(settings.batch_size)
    server = EdgeHttp(
        feed,
        settings.http_host,
        settings.http_port,
        source=settings.source,
        camera=camera_name(settings.camera),
        token=os.environ.get("EDGE_MNIST_EDGE_TOKEN") or None,
        no_auth=settings.http_no_auth,
    ).start()
    try:
        yield feed
    finally:
        feed.close()
        server.close()


@contextlib.contextmanager
def _metrics(settings: EdgeSettings, sink: Sink) -> Iterator[RunStats]:
    """The run's stats, served to Prometheus on --metrics-port while the run lasts."""
    stats = RunStats()
    if settings.metrics_port is None:
        yield stats
        return
    from edge_app.prometheus import EdgeMetrics

    exporter = EdgeMetrics(stats, sink)
    exporter.serve(settings.metrics_host, settings.metrics_port)
    try:
        yield stats
    finally:
        exporter.close()


def _build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge_app.topology import build_archive, build_topology

    settings = EdgeSettings.from_args(args)
    topo = build_topology(settings, bootstrap_servers=args.bootstrap_servers, credentials=args.credentials)
    archive = build_archive(topo, Path(args.out))
    print(archive)
    return 0


def _summary(stats: RunStats, pending: int, path: str | None) -> None:
    """The run's closing figures: logged for a person, and as a JSON line in `path` for programs."""
    summary = {**stats.to_dict(), "outbox_pending": pending}
    log.info("done: %s", json.dumps(summary))
    if path:
        write_summary(path, summary)


if __name__ == "__main__":
    sys.exit(main())
