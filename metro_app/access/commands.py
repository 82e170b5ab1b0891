"""`metro-app tokens add` and `tokens list`: the people of a tokens file, each add audited in the store."""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path
from typing import Any

from edgemnist.cliargs import env_flag
from edgemnist.errors import ConfigError
from metro_app.access.roles import ROLES
from metro_app.access.tokens import TokenBook, add_person

__all__ = ["add_token_parsers", "cli_user"]


def cli_user() -> str:
    """Who runs a command on this machine, as the audit trail names them (unverified)."""
    try:
        return f"{getpass.getuser()}@cli"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "unknown@cli"


def add_token_parsers(sub: Any, store_flag: Any) -> list[argparse.ArgumentParser]:
    """`tokens` with its subcommands `add` and `list`; `store_flag(parser)` adds --store."""
    tokens = sub.add_parser("tokens", help="the API's people: add one (prints their token once), list them")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    add = tsub.add_parser(
        "add",
        help="add a person with a role to the tokens file (made if missing, mode 0600)",
        description="Stores only the token's sha256. Last line of output: the new token, shown this once.",
    )
    add.add_argument("name", help="the person (or station): letters, digits and . _ @ -")
    add.add_argument("--role", required=True, choices=ROLES, help="viewer < labeller < operator")
    listing = tsub.add_parser("list", help="the people in the tokens file and their roles (no hashes)")
    for p in (add, listing):
        env_flag(p, "--file", "EDGE_MNIST_API_TOKENS", help="the tokens file", dest="tokens_file")
    store_flag(add)
    add.set_defaults(func=_add)
    listing.set_defaults(func=_list)
    return [add, listing]


def _file(args: argparse.Namespace) -> Path:
    if not args.tokens_file:
        raise ConfigError("no tokens file: give --file FILE (or env EDGE_MNIST_API_TOKENS)")
    return Path(args.tokens_file)


def _add(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from metro_app.settings import HubSettings, mask_url
    from metro_app.store import Store

    path = _file(args)
    url = HubSettings(store=args.store or "").store_url
    try:
        store = Store(url)  # opened first: no add goes unaudited
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigError(
            f"store {mask_url(url)}: cannot open it to audit the add ({getattr(exc, 'orig', exc)})"
        ) from exc
    try:
        token = add_person(path, args.name, args.role)
        store.add_audit(cli_user(), None, False, "metro-app tokens add", str(path), 0,
                        {"name": args.name, "role": args.role})  # fmt: skip
    finally:
        store.close()
    print(f"added {args.name} ({args.role}) to {path}; their token, shown only now:")
    print(token)
    return 0


def _list(args: argparse.Namespace) -> int:
    path = _file(args)
    for person in TokenBook.load(path).people():  # a bad file is refused, naming the entry
        print(json.dumps({"name": person.name, "role": person.role}))
    return 0
