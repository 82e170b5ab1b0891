"""The ``edge-mnist`` command: project tasks that are not the edge or the hub themselves.

Subcommands live in ``COMMANDS`` (name -> help, arguments, handler), so a
new one is a function pair and one dictionary entry.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgemnist._cdc_commands import (
    add_kafka_flags,
    cdc_arguments,
    db_arguments,
    evaluate_arguments,
    run_cdc,
    run_db,
    run_evaluate,
    train_from_topic,
)
from edgemnist.cliargs import CommandParser, run_command
from edgemnist.errors import ConfigError
from edgemnist.uncertainty import CONFIDENCE

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its help line, how it adds its arguments, and what it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default="bundled",
        help="training data: bundled (4,000 train / 1,000 held out), mnist-idx:DIR, openml [default: %(default)s]",
    )
    parser.add_argument(
        "--out", default="models", help="directory for the model and its card [default: %(default)s]"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed [default: %(default)s]")
    parser.add_argument(
        "--confidence",
        type=float,
        default=CONFIDENCE,
        help="threshold for the uncertain share reported on the card [default: %(default)s]",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--from-topic",
        default=None,
        help="train on the table a Debezium change topic describes (e.g. edge-mnist.cdc.public.mnist_train); "
        "--data then only names the held-out split",
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        default=10.0,
        help="with --from-topic: stop reading after this many seconds without new records [default: %(default)s]",
    )
    add_kafka_flags(parser)


def _train(args: argparse.Namespace) -> int:
    from edgemnist.model import train_default

    if not 0.0 < args.confidence < 1.0:
        raise ConfigError(f"--confidence must be between 0 and 1, got {args.confidence}")
    if args.from_topic:
        return train_from_topic(args)
    print(f"training on {args.data}'s training split, holding out its stream split")
    model_path, metrics = train_default(
        args.out, args.data, seed=args.seed, confidence=args.confidence, progress=not args.quiet
    )
    print(f"held-out accuracy: {metrics['accuracy']:.4f}")
    print(f"uncertain share (max score <= {args.confidence:.2f}): {metrics['uncertain_share']:.4f}")
    print(f"model: {model_path}")
    print(f"card:  {model_path.with_suffix('.json')}")
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    try:  # the demo drives both apps: it lives outside the core, and an edge image leaves it out
        from edgemnist_demo.cli import add_arguments
    except ImportError:
        return  # `edge-mnist demo ...` then says what to install (main lets its flags through)
    add_arguments(parser)


def _demo_missing() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("edgemnist_demo") is None
    except (ImportError, ValueError):  # a module set to None (blocked) counts as missing
        return True


def _demo(args: argparse.Namespace) -> int:
    try:
        from edgemnist_demo.cli import run
    except ImportError as exc:
        raise ConfigError(
            "the demo is not installed here (package edgemnist_demo; the edge image leaves it out): "
            "run it from a checkout with `make demo`, or pip install 'edge-mnist[demo]'"
        ) from exc
    return run(args)


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "run broker, hub, edge cameras and dashboard on this machine; Ctrl-C stops all",
        _demo_arguments,
        _demo,
    ),
    "train": Command(
        "train a model on prepared digits and write it with its model card", _train_arguments, _train
    ),
    "db": Command("MNIST digits in PostgreSQL: load the tables, insert test rows", db_arguments, run_db),
    "cdc": Command(
        "Kafka Connect + Debezium: stream the digit tables (and the hub's labels) to Kafka",
        cdc_arguments,
        run_cdc,
    ),
    "evaluate": Command(
        "score a model on a digit table's change topic: running accuracy and log loss",
        evaluate_arguments,
        run_evaluate,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per entry in ``COMMANDS``."""
    parser = CommandParser(prog="edge-mnist", description="edge-mnist project tasks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; expected failures print one line and exit 2, never a traceback."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not (args.command == "demo" and _demo_missing()):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return run_command("edge-mnist", args, args._run)


if __name__ == "__main__":
    sys.exit(main())
