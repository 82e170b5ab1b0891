"""`metro-app keys`: make the hub's signing key pair, show its public key, check a model file offline.

The private key goes to ``DIR/hub.key`` with mode 0600 and is never printed, logged or
passed in argv; ``DIR/hub.pub`` is the line edges are given in ``--trusted-keys``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgemnist.errors import ConfigError
from edgemnist.signing import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, ModelSignature, TrustedKeys, init_keys

__all__ = ["add_keys_parser", "verify_model_file"]


def add_keys_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    keys = sub.add_parser(
        "keys", help="the hub's model signing keys: init, show, verify a model file offline"
    )
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    init = ksub.add_parser("init", help=f"make DIR/{PRIVATE_KEY_FILE} (mode 0600) and DIR/{PUBLIC_KEY_FILE}")
    init.add_argument("--dir", type=Path, required=True, help="directory for the key pair")
    init.set_defaults(func=_init)
    show = ksub.add_parser("show", help=f"print the public key (DIR/{PUBLIC_KEY_FILE})")
    show.add_argument("--dir", type=Path, required=True, help="directory of the key pair")
    show.set_defaults(func=_show)
    verify = ksub.add_parser(
        "verify",
        help="check offline that a trusted key signed a model file",
        description="Exit status 0 when the signature verifies, 1 with the reason otherwise.",
    )
    verify.add_argument("model", type=Path, help="the .skops file")
    verify.add_argument(
        "--signature",
        type=Path,
        help="its signature card: <model>.sig.json from the hub, or an edge's saved <version>.json "
        "(default: <model>.sig.json, else <model>.json)",
    )
    verify.add_argument("--trusted-keys", type=Path, required=True, help="hub.pub lines to trust")
    verify.set_defaults(func=_verify)
    return keys


def _init(args: argparse.Namespace) -> int:
    key = init_keys(args.dir)
    print(f"wrote {args.dir / PRIVATE_KEY_FILE} (mode 0600, keep it secret) and {args.dir / PUBLIC_KEY_FILE}",
          file=sys.stderr)  # fmt: skip
    print(key.public_line())
    return 0


def _show(args: argparse.Namespace) -> int:
    path = args.dir / PUBLIC_KEY_FILE
    try:
        print(path.read_text().strip())
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read it ({exc.strerror}); make one with `metro-app keys init`"
        ) from exc
    return 0


def verify_model_file(model: Path, card_path: Path, trusted: TrustedKeys) -> str | None:
    """None when a key in `trusted` signed `model` as its card describes it, else why not."""
    try:
        card = json.loads(card_path.read_text())
        data = model.read_bytes()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {model} and its signature card {card_path}: {exc}") from exc
    if not isinstance(card, dict) or "version" not in card:
        raise ConfigError(f"{card_path}: not a signature card (no version)")
    try:
        sig = None if card.get("signature") is None else ModelSignature.from_json(card["signature"])
    except ValueError as exc:
        return f"malformed signature in {card_path}: {exc}"
    targets = card.get("targets")
    return trusted.check_model(
        data,
        sig,
        version=str(card["version"]),
        targets=None if targets is None else tuple(targets),
        parent=card.get("parent"),
        role=card.get("role"),
        seq=card.get("seq"),  # an edge's saved card holds the publication number its record was signed with
    )


def signature_card(model: Path, given: Path | None = None) -> Path:
    """`given`, else ``<model>.sig.json`` (from the hub) when it exists, else ``<model>.json``."""
    if given is not None:
        return given
    sig_json = model.with_name(model.name.removesuffix(".skops") + ".sig.json")
    return sig_json if sig_json.exists() else model.with_suffix(".json")


def _verify(args: argparse.Namespace) -> int:
    card = signature_card(args.model, args.signature)
    why = verify_model_file(args.model, card, TrustedKeys.load(args.trusted_keys))
    if why is not None:
        print(f"{args.model}: REFUSED: {why}")
        return 1
    print(f"{args.model}: signature OK ({card})")
    return 0
