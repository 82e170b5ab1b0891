"""`edge-mnist demo` / `python -m edgemnist_demo`: broker, hub, edge cameras and dashboard on this machine.

Ctrl-C (or --duration) stops every process it started; the last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from edgemnist.cli import Command
from edgemnist.cliargs import CommandParser, env_flag
from edgemnist.errors import EdgeMnistError
from edgemnist_demo.run import DemoOptions, run_demo

__all__ = ["COMMAND", "add_arguments", "run", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's flags (also `edge-mnist demo`'s)."""
    parser.add_argument(
        "--cameras",
        type=int,
        default=3,
        help="edge cameras; the last is a Test camera [default: %(default)s]",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="seconds to run, then stop and print the summary; 0 = until Ctrl-C",
    )
    env_flag(
        parser,
        "--bootstrap-servers",
        "EDGE_MNIST_BOOTSTRAP_SERVERS",
        default=None,
        help="use this Kafka instead of starting the embedded broker",
    )
    parser.add_argument(
        "--model",
        default="models",
        help="model file or directory; trained there if missing [default: %(default)s]",
    )
    parser.add_argument("--port", type=int, default=8000, help="hub API port [default: %(default)s]")
    parser.add_argument("--dashboard-port", type=int, default=8866, help="Voila port [default: %(default)s]")
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the Voila dashboard")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument(
        "--state-dir",
        default=None,
        help="where logs, outboxes and the hub store go [default: a new temporary directory]",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo with parsed flags; the last line on stdout is the JSON summary."""
    servers = args.bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    opts = DemoOptions(
        cameras=args.cameras,
        duration=args.duration,
        bootstrap_servers=servers,
        model=Path(args.model),
        port=args.port,
        dashboard_port=args.dashboard_port,
        dashboard=not args.no_dashboard,
        browser=not args.no_browser,
        state_dir=Path(args.state_dir) if args.state_dir else None,
    )
    summary = run_demo(opts)
    print(json.dumps(summary), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`edge-mnist-demo`: errors print one line and exit 2, as `edge-mnist demo` does."""
    parser = CommandParser(
        prog="edge-mnist-demo",
        description="run broker, hub, edge cameras and dashboard on this machine; Ctrl-C stops all",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except EdgeMnistError as exc:
        print(f"edge-mnist-demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge-mnist-demo: interrupted", file=sys.stderr)
        return 130


COMMAND = Command(
    "run broker, hub, edge cameras and dashboard on this machine; Ctrl-C stops all", add_arguments, run
)

if __name__ == "__main__":
    sys.exit(main())
