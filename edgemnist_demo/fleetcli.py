"""`edge-mnist fleet-sim` (and `bench/fleet.py`): size a deployment with simulated cameras.

Without `--bootstrap-servers` it starts Apache Kafka (the jars the tests use, `make kafka-jars`),
and without `--postgres-url` a throwaway PostgreSQL cluster (Debian's `postgresql` binaries), as
the tests and `bench/hub.py` do. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import sqlalchemy as sa

from edge_app.fleetsim import FleetPlan
from edgemnist.cli import Command
from edgemnist.cliargs import CommandParser, env_flag
from edgemnist.errors import ConfigError, EdgeMnistError
from edgemnist_demo.fleet import FleetOptions, Services, run_fleet
from edgemnist_demo.fleetreport import table

__all__ = ["COMMAND", "add_arguments", "run", "main"]


def _hubs(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hubs {text!r}: hub counts separated by commas, e.g. 1,2,3"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's flags."""
    add = parser.add_argument
    add("--cameras", type=int, default=10_000, help="simulated cameras [default: %(default)s]")
    add("--duration", type=float, default=60.0, help="seconds of load per hub count [default: %(default)s]")
    add("--window", type=float, default=10.0, help="seconds per metrics window [default: %(default)s]")
    add("--fps", type=float, default=30.0, help="images scored per second per camera [default: %(default)s]")
    add("--uncertain-share", type=float, default=0.015,
        help="share of images sent home as uncertain [default: %(default)s]")  # fmt: skip
    add("--drift-share", type=float, default=0.05,
        help="share of cameras whose frames drift (rotated; more uncertain, less accurate) [default: %(default)s]")  # fmt: skip
    add("--partitions", type=int, default=12, help="partitions of the events topic [default: %(default)s]")
    add("--hubs", type=_hubs, default=(1,), help="hub counts to run, one run each, e.g. 1,2,3 [default: 1]")
    add("--workers", type=int, default=2, help="load processes [default: %(default)s]")
    add("--api-hub", action=argparse.BooleanOptionalAction, default=True,
        help="ask the views of one more hub that ingests nothing (metro-app run --no-ingest), in its own "
             "process as a deployment at fleet size serves its dashboards; --no-api-hub asks the ingesting "
             "hubs [default: on]")  # fmt: skip
    add("--ingest-nice", type=int, default=10,
        help="run the ingesting hubs at this nice value (0-19): they work through a backlog, so on a "
             "shared host they may yield the CPU to the hub the dashboards ask [default: %(default)s]")  # fmt: skip
    add("--drain", type=float, default=120.0, help="seconds the hubs get to catch up [default: %(default)s]")
    add("--seed", type=int, default=0, help="which cameras drift, and the draws [default: %(default)s]")
    add("--work-dir", default=None, help="where hub logs go [default: a temporary directory]")
    env_flag(parser, "--bootstrap-servers", "EDGE_MNIST_BOOTSTRAP_SERVERS", default=None,
             help="use this Kafka instead of starting Apache Kafka")  # fmt: skip
    env_flag(parser, "--postgres-url", "EDGE_MNIST_FLEET_POSTGRES_URL", default=None,
             help="use this PostgreSQL server instead of starting one: a role that may CREATE DATABASE "
                  "(each run gets a fresh database there); the password from PGPASSWORD or ~/.pgpass, "
                  "never in the URL")  # fmt: skip


def server_databases(url: str) -> Callable[[str], str]:
    """Fresh databases on a PostgreSQL server the user runs: `fresh(name)` creates one, returns its URL.

    >>> server_databases("postgresql://fleet:secret@db.example/postgres")
    Traceback (most recent call last):
    edgemnist.errors.ConfigError: --postgres-url: leave the password out of the URL (command lines are readable by every user of the machine); set PGPASSWORD or use ~/.pgpass
    >>> server_databases("sqlite:///x.db")
    Traceback (most recent call last):
    edgemnist.errors.ConfigError: --postgres-url 'sqlite:///x.db': a PostgreSQL URL, e.g. postgresql://fleet@127.0.0.1:5432/postgres
    """
    try:
        server = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        server = None
    if server is None or server.get_backend_name() != "postgresql":
        raise ConfigError(
            f"--postgres-url {url!r}: a PostgreSQL URL, e.g. postgresql://fleet@127.0.0.1:5432/postgres"
        )
    if server.password:
        raise ConfigError(
            "--postgres-url: leave the password out of the URL (command lines are readable by every user "
            "of the machine); set PGPASSWORD or use ~/.pgpass"
        )
    server = server.set(drivername="postgresql+psycopg")

    def fresh(name: str) -> str:
        engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.DBAPIError as exc:
            raise ConfigError(f"--postgres-url: cannot create database {name!r}: {exc.orig}") from None
        finally:
            engine.dispose()
        return server.set(database=name).render_as_string(hide_password=False)

    return fresh


@contextlib.contextmanager
def services(bootstrap: str | None, work: Path, postgres_url: str | None = None) -> Iterator[Services]:
    """Apache Kafka and a throwaway PostgreSQL cluster, unless given, stopped on exit.

    On a PostgreSQL server of the user's, its processes are not this machine's to find: the report
    then leaves PostgreSQL's CPU out.
    """
    with contextlib.ExitStack() as stack:
        fresh = server_databases(postgres_url) if postgres_url else None
        marker = None
        if not bootstrap:
            from edgemnist.testing.brokers import ApacheKafka

            kafka = ApacheKafka().start()
            stack.callback(kafka.close)
            bootstrap, marker = kafka.bootstrap_servers, str(kafka.workdir)
        if fresh is not None:
            yield Services(bootstrap, fresh, work, marker, None)
            return
        from edgemnist.testing.postgres import PostgresCluster

        pg = PostgresCluster().start()
        stack.callback(pg.stop)
        yield Services(bootstrap, pg.fresh_database, work, marker, str(pg.data))


def run(args: argparse.Namespace) -> int:
    """Run the simulator; the table goes to stdout, then the JSON line."""
    try:
        plan = FleetPlan(cameras=args.cameras, window=args.window, fps=args.fps,
                         uncertain_share=args.uncertain_share, drift_share=args.drift_share, seed=args.seed)  # fmt: skip
        opts = FleetOptions(plan=plan, hubs=args.hubs, partitions=args.partitions, duration=args.duration,
                            workers=args.workers, drain=args.drain, api_hub=args.api_hub,
                            ingest_nice=args.ingest_nice)  # fmt: skip
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="edge-mnist-fleet-"))
    work.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with services(args.bootstrap_servers, work, args.postgres_url) as svc:
        result = run_fleet(opts, svc, say)
    print(table(result), flush=True)
    print(json.dumps(result), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m edgemnist_demo.fleetcli` / `bench/fleet.py`: errors print one line and exit 2."""
    parser = CommandParser(prog="edge-mnist fleet-sim", description=COMMAND.help)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except EdgeMnistError as exc:
        print(f"edge-mnist fleet-sim: error: {exc}", file=sys.stderr)
        return 2


COMMAND = Command(
    "simulate N cameras against K hubs on one PostgreSQL and report what saturates", add_arguments, run
)

if __name__ == "__main__":
    sys.exit(main())
