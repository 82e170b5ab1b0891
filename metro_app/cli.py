"""`metro-app`: run the hub, retrain, list, import and roll out models; background jobs are in `deploy.commands`.

The API's writes need a bearer token: a person's from the tokens file (`metro-app tokens add`,
`run --tokens FILE`) or the single shared EDGE_MNIST_API_TOKEN; a token is never a flag.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgemnist.cliargs import CommandParser, env_flag, kafka_settings, run_command, setup_logging
from edgemnist.errors import ConfigError, EdgeMnistError
from metro_app.access.commands import add_token_parsers, cli_user
from metro_app.deploy.commands import add_job_parsers
from metro_app.keys import add_keys_parser
from metro_app.settings import HUB_ENV, HubSettings, add_hub_flags
from metro_app.training.retrain import RetrainSettings, add_retrain_flags

__all__ = ["main", "build_parser"]

log = logging.getLogger("metro_app")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="metro-app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume the topic, store, serve the HTTP API (foreground)")
    add_hub_flags(run)
    add_retrain_flags(run)
    run.set_defaults(func=_run)
    retrain = sub.add_parser(
        "retrain",
        help="train a candidate on base data + stored field labels, judge it, record it, publish if accepted",
        description="Last line of output: the result as JSON.",
    )
    _retrain_arguments(retrain)
    retrain.set_defaults(func=_retrain)
    models, imp = _models_parsers(sub)
    commands = [
        run,
        retrain,
        models,
        imp,
        *_rollout_parsers(sub),
        *add_job_parsers(sub),
        add_keys_parser(sub),
        *add_token_parsers(sub, _store_flag),
    ]
    for p in commands:
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _inherit(models, imp)
    return parser


def _models_parsers(sub: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """`models` and its subcommand `models import`."""
    models = sub.add_parser(
        "models", help="the model registry as a table with its transitions (or JSON lines)"
    )
    _store_flag(models)
    models.add_argument("--json", action="store_true", help="one JSON object per model, newest first")
    models.set_defaults(func=_models)
    msub = models.add_subparsers(dest="models_command")
    imp = msub.add_parser(
        "import",
        help="register a model trained elsewhere (edge-mnist train output), evaluated on the hold-outs",
        description="Last line of output: the registered model as JSON.",
    )
    imp.add_argument("path", type=Path, help="the .skops file (its model card .json beside it)")
    imp.add_argument(
        "--trusted-keys",
        type=Path,
        help="import only if a key in this file (hub.pub lines) signed the model: its signature card "
        "is --signature, else <model>.sig.json, else the card beside it (as `keys verify` reads it)",
    )
    imp.add_argument("--signature", type=Path, help="the model's signature card (with --trusted-keys)")
    _retrain_arguments(imp, publish=False)
    imp.set_defaults(func=_models_import)
    return models, imp


def _rollout_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """`rollout` and `rollback`."""
    rollout = sub.add_parser(
        "rollout",
        help="roll a registered model out through canary cameras: promoted or rolled back on live quality",
        description="Registers the rollout in the store; the rollout watcher of a running hub "
        "(`metro-app run`) publishes, watches and decides. With --wait, the last line is the outcome as "
        "JSON and the exit status is 0 when promoted, 1 when rolled back or failed.",
    )
    rollout.add_argument("version", help="a registered model version (see `metro-app models`)")
    _rollout_arguments(rollout)
    rollout.set_defaults(func=_rollout)
    back = sub.add_parser(
        "rollback",
        help="by hand: end a running canary, or publish VERSION (default: the current model's parent)",
        description="Publishes directly on the models topic (needs Kafka). Last line: what was done, as JSON.",
    )
    back.add_argument("version", nargs="?", help="the version to serve (default: the current model's parent)")
    back.add_argument("--cameras", help="only these cameras, comma-separated (default: every camera)")
    back.add_argument(
        "--force",
        action="store_true",
        help="publish VERSION even though it never served (never published nor a canary)",
    )
    _retrain_arguments(back, publish=False, retrain=False)
    back.set_defaults(func=_rollback)
    return [rollout, back]


def _inherit(parent: argparse.ArgumentParser, child: argparse.ArgumentParser) -> None:
    """Flags both a command and its subcommand take (`models --store X import`) keep the command's value.

    argparse lets a subcommand's defaults overwrite what was parsed before it, so the child's
    copies default to "not given" and only an explicit child flag wins.
    """
    shared = {a.dest for a in parent._actions} - {"help"}
    for action in child._actions:
        if action.dest in shared:
            action.default = argparse.SUPPRESS


def _store_flag(parser: argparse.ArgumentParser) -> None:
    [(flag, env, typ, text)] = [row for row in HUB_ENV if row[0] == "--store"]
    env_flag(parser, flag, env, type=typ, help=text)


def _retrain_arguments(
    parser: argparse.ArgumentParser, *, publish: bool = True, retrain: bool = True
) -> None:
    _store_flag(parser)
    if retrain:
        add_retrain_flags(parser)
    for flag, env, typ, text in HUB_ENV:
        if flag in ("--models-topic", "--model", "--signing-key"):
            default = getattr(HubSettings(), flag[2:].replace("-", "_"))
            env_flag(parser, flag, env, default=default, type=typ, help=text)
    if publish:
        parser.add_argument(
            "--publish",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="publish an accepted model on the models topic (needs Kafka) (default: publish)",
        )
    env_flag(parser, "--bootstrap-servers", "EDGE_MNIST_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers")
    env_flag(parser, "--credentials", "EDGE_MNIST_CREDENTIALS", help="JSON credentials file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    env_flag(
        parser,
        "--labels-from-topic",
        "EDGE_MNIST_LABELS_TOPIC",
        help="take the field labels from the labels table's Debezium change topic instead of the store "
        "(images still come from the store), e.g. edge-mnist.cdc.public.labels",
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        default=5.0,
        help="with --labels-from-topic: stop reading after this many quiet seconds (default 5)",
    )


def _rollout_arguments(parser: argparse.ArgumentParser) -> None:
    from metro_app.rollout.policy import Policy

    p = Policy()
    _store_flag(parser)
    [(flag, env, typ, text)] = [row for row in HUB_ENV if row[0] == "--model"]
    env_flag(parser, flag, env, default=HubSettings().model, type=typ, help=text)
    parser.add_argument(
        "--canary",
        required=True,
        help="canary cameras, comma-separated (camera names as given to edge-app --camera, or full names)",
    )
    env_flag(parser, "--windows", "EDGE_MNIST_CANARY_WINDOWS", default=p.windows, type=int,
             help="metrics windows each canary camera sends within bounds before promotion", dest="canary_windows")  # fmt: skip
    env_flag(parser, "--max-accuracy-drop", "EDGE_MNIST_MAX_ACCURACY_DROP", default=p.max_accuracy_drop,
             type=float, help="live accuracy points a canary camera may lose against its windows before")  # fmt: skip
    env_flag(parser, "--max-uncertain-rise", "EDGE_MNIST_MAX_UNCERTAIN_RISE", default=p.max_uncertain_rise,
             type=float, help="uncertain-share points a canary camera may gain against its windows before")  # fmt: skip
    env_flag(parser, "--timeout", "EDGE_MNIST_CANARY_TIMEOUT", default=p.timeout, type=float,
             help="seconds the canary has to send its windows; then it is rolled back", dest="canary_timeout")  # fmt: skip
    env_flag(parser, "--shadow-labels", "EDGE_MNIST_SHADOW_LABELS", default=p.shadow_labels, type=int,
             help="labelled disagreements (where exactly one model is right) that decide the shadow stage")  # fmt: skip
    env_flag(parser, "--shadow-alpha", "EDGE_MNIST_SHADOW_ALPHA", default=p.shadow_alpha, type=float,
             help="McNemar p-value below which the serving model is significantly better: roll back")  # fmt: skip
    parser.add_argument(
        "--no-shadow",
        action="store_true",
        help="skip the shadow stage: serve on the canary cameras at once, judged on live quality only",
    )
    parser.add_argument(
        "--wait", action="store_true", help="wait for the outcome (promoted, rolled back, failed)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`metro-app`; errors print one line and exit 2 (edgemnist.cliargs.run_command)."""
    try:
        args = build_parser().parse_args(argv)
    except EdgeMnistError as exc:  # a bad EDGE_MNIST_* value, found while reading the env defaults
        print(f"metro-app: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.verbose)
    return run_command("metro-app", args, args.func)


def _run(args: argparse.Namespace) -> int:
    from metro_app.service import run_hub

    settings = HubSettings.from_args(args)
    return run_hub(settings, kafka_settings(args), RetrainSettings.from_args(args))


def _label_source(name: str) -> Any:
    """A reader of field labels that a package above the hub plugs in (entry points ``metro_app.label_sources``).

    `edgemnist_cdc` adds ``debezium``: the labels table's change topic. The hub never imports it.
    """
    from importlib.metadata import entry_points

    for entry in entry_points(group="metro_app.label_sources", name=name):
        try:
            return entry.load()
        except ImportError as exc:
            raise ConfigError(f"--labels-from-topic needs the CDC package: {exc}") from exc
    raise ConfigError("--labels-from-topic needs the CDC package: pip install 'edge-mnist[cdc]'")


def _retrain(args: argparse.Namespace) -> int:
    from metro_app.rollout.publish import ModelPublisher, load_signing_key
    from metro_app.store import Store
    from metro_app.training.retrain import retrain

    settings = RetrainSettings.from_args(args)
    publisher = (
        ModelPublisher(
            kafka_settings(args), args.models_topic, signing_key=load_signing_key(args.signing_key)
        )
        if args.publish and args.models_topic
        else None
    )
    labels = None
    if args.labels_from_topic:
        labels_from_topic = _label_source("debezium")
        labels, stats = labels_from_topic(
            kafka_settings(args), args.labels_from_topic, until_idle=args.until_idle
        )
        print(
            f"{len(labels)} labelled images from {args.labels_from_topic} ({stats['records']} records)",
            file=sys.stderr,
        )
    store = Store(HubSettings(store=args.store or "").store_url)
    try:
        with _audited(store, "metro-app retrain", "", {}) as detail:
            result = retrain(store, settings, publisher=publisher, console=not args.quiet, labels=labels)
            detail.update(version=result.version, status=result.status)
    finally:
        if publisher is not None:
            publisher.close()
        store.close()
    print(result.reason, file=sys.stderr)
    print(json.dumps({k: v for k, v in result.to_dict().items() if k not in ("status", "seconds")}
                     | {"status": result.status, "seconds": round(result.seconds, 2)}))  # fmt: skip
    if result.accepted and settings.canary:
        return 0 if result.rollout is not None else 1
    return 1 if result.accepted and publisher is not None and result.status != "published" else 0


def _open_store(args: argparse.Namespace):  # noqa: ANN202 - metro_app.store is imported late (no SQLAlchemy at parse time)
    from metro_app.store import Store

    return Store(HubSettings(store=args.store or "").store_url)


def _models(args: argparse.Namespace) -> int:
    from metro_app.store.rollouts import with_rollouts

    store = _open_store(args)
    try:
        models = with_rollouts(store.models(), store.rollout_book().latest_by_version())
    finally:
        store.close()
    if args.json:
        for m in models:
            print(json.dumps({k: v for k, v in m.items() if k != "card"}))
        return 0
    print(
        f"{'version':34} {'status':11} {'parent':34} {'base':>6} {'field':>6} {'p.field':>7} {'n_field':>7}  "
        "rollout"
    )
    for m in models:
        r = m.get("rollout")
        where = f"{r['rollout']}: {r['state']} on {','.join(r['targets'])}" if r else "-"
        print(
            f"{m['version']:34} {m['status']:11} {m['parent'] or '-':34} {_pct(m['base_accuracy']):>6} "
            f"{_pct(m['field_accuracy']):>6} {_pct(m['parent_field_accuracy']):>7} {m['n_field_train'] or 0:>7}  "
            f"{where}"
        )
        for e in m["events"]:
            print(f"    {e['time']}  {e['status']:11}  {e['reason']}")
    return 0


def _models_import(args: argparse.Namespace) -> int:
    from metro_app.training.modelimport import import_model

    if args.trusted_keys is not None:
        _check_import_signature(args.path, args.signature, args.trusted_keys)
    elif args.signature is not None:
        raise ConfigError("--signature needs --trusted-keys: the keys to check it against")
    store = _open_store(args)
    try:
        with _audited(store, "metro-app models import", str(args.path), {}) as detail:
            model = import_model(store, args.path, RetrainSettings.from_args(args))
            detail.update(version=model.get("version"), status=model.get("status"))
    finally:
        store.close()
    print(model["reason"], file=sys.stderr)
    print(json.dumps(model))
    return 0


def _check_import_signature(model: Path, signature: Path | None, trusted_keys: Path) -> None:
    """Refuse (ModelError naming why) a model file no trusted key signed, before anything is stored."""
    from edgemnist.errors import ModelError
    from edgemnist.signing import TrustedKeys
    from metro_app.keys import signature_card, verify_model_file

    card = signature_card(model, signature)
    why = verify_model_file(model, card, TrustedKeys.load(trusted_keys))
    if why is not None:
        raise ModelError(f"{model}: not imported: {why} (signature card {card})")
    log.info("%s: signature OK (%s)", model, card)


def _rollout(args: argparse.Namespace) -> int:
    from metro_app.rollout.policy import Policy
    from metro_app.rollout.watcher import register_rollout, wait_for
    from metro_app.training.retrain import current_model

    policy = Policy(
        args.canary_windows, args.max_accuracy_drop, args.max_uncertain_rise, args.canary_timeout,
        shadow=not args.no_shadow, shadow_labels=args.shadow_labels, shadow_alpha=args.shadow_alpha,
    )  # fmt: skip
    store = _open_store(args)
    try:
        if store.current_model() is None:  # the fleet's first model: registered as serving, as the hub does
            current_model(store, RetrainSettings(model=args.model))
        with _audited(store, "metro-app rollout", args.version, {"canary": args.canary}):
            r = register_rollout(store, args.version, args.canary, policy, "metro-app rollout")
        print(f"rollout {r['rollout']} registered: {r['reason']}; a running hub's rollout watcher starts it",
              file=sys.stderr)  # fmt: skip
        if args.wait:
            r = wait_for(store, r["rollout"], policy.timeout * (2 if policy.shadow else 1) + 120)
            print(f"rollout {r['rollout']}: {r['state']}: {r['reason']}", file=sys.stderr)
    finally:
        store.close()
    print(json.dumps(r))
    return 0 if not args.wait or r["state"] == "promoted" else 1


def _rollback(args: argparse.Namespace) -> int:
    from metro_app.rollout.publish import ModelPublisher, load_signing_key
    from metro_app.rollout.watcher import parse_cameras, rollback

    if not args.models_topic:
        raise ConfigError("--models-topic is empty: nowhere to publish the rollback")
    cameras = parse_cameras(args.cameras) if args.cameras else None
    publisher = ModelPublisher(
        kafka_settings(args), args.models_topic, signing_key=load_signing_key(args.signing_key)
    )
    store = _open_store(args)
    try:
        with _audited(store, "metro-app rollback", args.version or "", {"cameras": cameras}) as detail:
            done = rollback(store, publisher, args.version, cameras, force=args.force)
            detail.update(done=done)
    finally:
        publisher.close()
        store.close()
    print(json.dumps(done))
    return 0


@contextmanager
def _audited(store: Any, command: str, target: str, detail: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Record `command` in the store's audit trail under the machine's user: status 0 done, 1 failed.

    The command runs with the store's own credentials, so its person is unverified (see docs/access.md).
    """
    try:
        yield detail
    except BaseException:
        store.add_audit(cli_user(), None, False, command, target, 1, detail)
        raise
    store.add_audit(cli_user(), None, False, command, target, 0, detail)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    sys.exit(main())
