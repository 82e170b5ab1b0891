"""What the three CLIs (edge-mnist, edge-app, metro-app) share: one --help style, env-backed flags, errors.

Every flag's --help ends with ``[default: X]`` where it has one and ``[env: NAME]`` where an
``EDGE_MNIST_*`` env var sets it; `CommandParser` gives each command and subcommand that style.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from edgemnist.errors import ConfigError, EdgeMnistError

__all__ = ["CommandParser", "HelpFormatter", "check_fields", "env_flag", "setup_logging", "run_command"]


class HelpFormatter(argparse.HelpFormatter):
    """Each option's help shows its default as ``[default: X]`` (unless the help already speaks of it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").replace(" (default: %(default)s)", " [default: %(default)s]")
        if (
            "default" in text
            or not action.option_strings
            or action.default in (None, False, "", argparse.SUPPRESS)
            or action.nargs == 0
        ):
            return text
        return f"{text} [default: %(default)s]"


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser in the CLIs' one style; its subcommands' parsers are CommandParsers too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(text)


def env_flag(
    parser: argparse.ArgumentParser | Any,
    flag: str,
    env: str,
    *,
    default: Any = None,
    type: Callable[[str], Any] = str,
    help: str = "",
    environ: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> None:
    """Add `flag`; its default is env `env` when set (parsed with `type`), else `default`."""
    environ = os.environ if environ is None else environ
    value = default
    if env in environ:
        raw = environ[env]
        try:
            value = _parse_bool(raw) if type is bool else type(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"env {env}={raw!r} is not a valid {getattr(type, '__name__', 'value')}"
            ) from exc
    shown = "" if default is None or kwargs.get("action") == "store_true" else f" [default: {default}]"
    if type is bool:
        kwargs.setdefault("action", argparse.BooleanOptionalAction)
        parser.add_argument(flag, default=value, help=f"{help}{shown} [env: {env}]", **kwargs)
        return
    parser.add_argument(flag, default=value, type=type, help=f"{help}{shown} [env: {env}]", **kwargs)


def check_fields(
    obj: object,
    checks: Iterable[tuple[str, bool, str]],
    *,
    prefix: str = "--",
    attr: Callable[[str], str] | None = None,
) -> None:
    """Refuse settings whose check failed: the first ``(name, ok, why)`` with ``ok`` False.

    The error names the flag (``prefix`` + name with dashes) and the value found (attribute
    ``attr(name)``, or ``name``), as every settings class of the apps reports it.

    >>> check_fields(object(), [("port", True, "must be a TCP port")])
    """
    for name, ok, why in checks:
        if not ok:
            value = getattr(obj, attr(name) if attr else name, None)
            raise ConfigError(f"{prefix}{name.replace('_', '-')} {why}, got {value!r}")


def setup_logging(verbose: bool = False) -> None:
    """Logs go to stderr, so --dry-run's stdout stays pure JSON lines."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.WARNING if not verbose else logging.INFO)


def run_command(prog: str, args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """Run one parsed subcommand the way all three CLIs do (edge-mnist, edge-app, metro-app).

    An expected failure (any EdgeMnistError) prints one line ``PROG COMMAND: error: ...`` and exits
    2, never a traceback; Ctrl-C prints ``PROG COMMAND: interrupted`` and exits 130.
    """
    where = f"{prog} {args.command}" if getattr(args, "command", None) else prog
    try:
        return int(run(args))
    except EdgeMnistError as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130


def add_kafka_flags(parser: argparse.ArgumentParser) -> None:
    """--bootstrap-servers and --credentials, env-backed, for subcommands that talk to Kafka."""
    env_flag(parser, "--bootstrap-servers", "EDGE_MNIST_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers")
    env_flag(parser, "--credentials", "EDGE_MNIST_CREDENTIALS", help="JSON credentials file")


def kafka_settings(args: argparse.Namespace) -> Any:
    """The KafkaSettings that --bootstrap-servers and --credentials (and the env) describe."""
    from edgemnist.kafka.settings import resolve

    return resolve(bootstrap_servers=args.bootstrap_servers, credentials=args.credentials)
