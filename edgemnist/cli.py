"""The ``edge-mnist`` command: project tasks that are not the edge or the hub themselves.

Subcommands live in ``COMMANDS`` (name -> help, arguments, handler), so a
new one is a function pair and one dictionary entry. Packages above the core add
theirs through the ``edgemnist.commands`` entry point group (each entry is a
``Command``): the laptop demo and CDC (see pyproject.toml). The core
imports neither; a missing one is named when its subcommand is asked for.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points

from edgemnist.cliargs import CommandParser, add_kafka_flags, run_command
from edgemnist.errors import ConfigError
from edgemnist.uncertainty import CONFIDENCE

__all__ = ["COMMANDS", "Command", "build_parser", "main", "plugin_commands"]

log = logging.getLogger(__name__)
PLUGINS = "edgemnist.commands"


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
        plugin = plugin_commands().get("train-from-topic")
        if plugin is None:
            raise ConfigError("--from-topic needs the CDC package: pip install 'edge-mnist[cdc]'")
        return plugin.run(args)
    print(f"training on {args.data}'s training split, holding out its stream split")
    model_path, metrics = train_default(
        args.out, args.data, seed=args.seed, confidence=args.confidence, progress=not args.quiet
    )
    print(f"held-out accuracy: {metrics['accuracy']:.4f}")
    print(f"uncertain share (max score <= {args.confidence:.2f}): {metrics['uncertain_share']:.4f}")
    print(f"model: {model_path}")
    print(f"card:  {model_path.with_suffix('.json')}")
    return 0


def _demo_missing(_parser: argparse.ArgumentParser) -> None:
    """No flags: `edge-mnist demo ...` then says what to install (main lets its flags through)."""


def _no_demo(args: argparse.Namespace) -> int:
    package = next((e.module.split(".")[0] for e in entry_points(group=PLUGINS, name="demo")), "of the demo")
    raise ConfigError(
        f"the demo is not installed here (package {package}; the edge image leaves it out): "
        "run it from a checkout with `make demo`, or pip install 'edge-mnist[demo]'"
    )


def plugin_commands() -> dict[str, Command]:
    """The subcommands that installed packages above the core add (entry point group ``edgemnist.commands``).

    A package that is listed but cannot be imported (the edge image leaves the demo out) is skipped.
    """
    found: dict[str, Command] = {}
    for entry in entry_points(group=PLUGINS):
        try:
            command = entry.load()
        except ImportError as exc:
            log.info("subcommand %s unavailable: %s", entry.name, exc)
            continue
        if isinstance(command, Command):
            found[entry.name] = command
    return found


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "run broker, hub, edge cameras and dashboard on this machine; Ctrl-C stops all",
        _demo_missing,
        _no_demo,
    ),
    "train": Command(
        "train a model on prepared digits and write it with its model card", _train_arguments, _train
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per entry in ``COMMANDS``."""
    parser = CommandParser(prog="edge-mnist", description="edge-mnist project tasks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    plugins = {name: c for name, c in plugin_commands().items() if name != "train-from-topic"}
    for name, command in {**COMMANDS, **plugins}.items():
        sub_parser = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; expected failures print one line and exit 2, never a traceback."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not (args.command == "demo" and args._run is _no_demo):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return run_command("edge-mnist", args, args._run)


if __name__ == "__main__":  # python -m edgemnist.cli: the plugins' Command is edgemnist.cli's, not __main__'s
    from edgemnist.cli import main as cli_main

    sys.exit(cli_main())
