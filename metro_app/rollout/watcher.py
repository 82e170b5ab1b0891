"""Canary rollouts: register one, watch it inside the hub, promote or roll back; and rollback by hand.

A rollout goes ``pending`` (registered: `metro-app rollout`, POST
/models/{version}/rollout, or an accepted retrain with ``--canary``) ->
``shadow`` (the model published to the canary cameras in the shadow role: it
scores beside the serving model, which still decides; the model's status is
shadow; the rule is `metro_app.rollout.paired`, judged on the labelled
disagreements) -> ``canary`` (the model published to serve on the canary cameras
only; the model's status is canary; the rule is `metro_app.rollout.policy`) ->
``promoted`` (published to every camera) or ``rolled_back`` (a shadow withdrawn,
or the model the fleet ran before published back to the canary cameras; the
model's status is rolled_back, with the figures). A rollout registered without a
shadow stage (``--no-shadow``) goes from pending straight to canary.

`RolloutWatcher` runs in every hub (`metro-app run`) but acts only while it
holds the store's lease, so with several hubs exactly one watches; its state
is the store's, so a restarted hub carries on where the last one stopped.
Each step publishes first and records after, and records with a
compare-and-set, so a step cut short by a crash is simply done again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from edgemnist.errors import BrokerUnavailable, ConfigError, ModelError
from metro_app.ingest.runloop import LoopHealth
from metro_app.rollout.paired import Agreement, Decision, PairedPolicy, Pairs, agreement, decide
from metro_app.rollout.policy import Figures, Policy, figures, judge
from metro_app.store import Store
from metro_app.store.rollouts import check_model

__all__ = [
    "LEASE_NAME",
    "Publisher",
    "parse_cameras",
    "register_rollout",
    "RolloutWatcher",
    "rollback",
    "wait_for",
]

log = logging.getLogger(__name__)
LEASE_NAME = "rollout-watcher"
_TERMINAL = ("promoted", "rolled_back", "failed")


class Publisher(Protocol):
    def publish(
        self,
        store: Store,
        version: str,
        targets: tuple[str, ...] | None = None,
        *,
        status: str = "published",
        why: str = "",
        role: str = "serve",
    ) -> Any: ...

    def withdraw_shadow(self, targets: tuple[str, ...] | None) -> None: ...


def parse_cameras(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"CamA,CamB"`` (or a list) -> ("CamA", "CamB"); ConfigError when empty or malformed."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(n.strip() for n in items if n.strip()))
    if not names or any(len(n) > 300 or "\x00" in n for n in names):
        raise ConfigError(f"--canary must name one or more cameras, comma-separated, got {text!r}")
    return names


def register_rollout(
    store: Store, version: str, cameras: str | Sequence[str], policy: Policy, trigger: str
) -> dict[str, Any]:
    """Check and register a pending rollout; the watcher of a running hub starts it.

    Refuses an unknown model, the model every camera already runs, canary cameras that have
    sent no windows yet (nothing to compare with), and a second rollout while one runs.
    """
    targets = parse_cameras(cameras)
    check_model(store, version)
    current = store.current_model()
    if current is None:
        raise ModelError(
            "no serving or published model in the registry: nothing to compare with or roll back to"
        )
    if current["version"] == version:
        raise ConfigError(f"{version} is already published to every camera")
    book = store.rollout_book()
    missing = [t for t in targets if not book.cameras_matching([t])]
    if missing:
        raise ConfigError(
            f"canary camera {', '.join(missing)}: no metrics windows from it at the hub yet, "
            "so nothing to compare the canary with"
        )
    rollout_id = book.add(version, current["version"], targets, policy, trigger)
    log.info("rollout %d registered: %s to %s (%s)", rollout_id, version, ", ".join(targets), trigger)
    return book.get(rollout_id) or {}


def _policy(r: Mapping[str, Any]) -> Policy:
    return Policy(
        r["windows"], r["max_accuracy_drop"], r["max_uncertain_rise"], r["timeout"], r["min_images"]
    )


def _paired(r: Mapping[str, Any]) -> PairedPolicy:
    rule = r["shadow"] or {}
    return PairedPolicy(
        int(rule.get("labels", 20)), float(rule.get("alpha", 0.05)), r["windows"], r["timeout"],
        r["max_accuracy_drop"], r["min_images"],
    )  # fmt: skip


class RolloutWatcher:
    """Advances every active rollout once per tick, while this hub holds the lease.

    Args:
        store: the hub's store (rollouts, metrics windows, registry).
        publisher: sends models to the models topic and records their status.
        interval: seconds between ticks (a tick reads only the canary cameras' new windows).
        lease_ttl: seconds another hub waits before taking over from a silent one.
    """

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        *,
        interval: float = 1.0,
        lease_ttl: float = 15.0,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.book = store.rollout_book()
        self.publisher = publisher
        self.interval = interval
        self.lease = store.lease(LEASE_NAME, holder, ttl=lease_ttl)
        self.clock = clock
        self.health = LoopHealth("rollouts", period=max(60.0, 10 * interval))
        self.stats: dict[str, Any] = {
            "leader": False,
            "ticks": 0,
            "errors": 0,
            "promoted": 0,
            "rolled_back": 0,
        }

    def tick(self) -> bool:
        """One pass over the active rollouts; False when another hub holds the lease."""
        leader = self.lease.acquire(now=self.clock())
        self.stats["leader"] = leader
        if not leader:
            return False
        self.stats["ticks"] += 1
        for r in self.book.active():
            try:
                self.advance(r)
            except BrokerUnavailable as exc:  # retried on the next tick; the state has not moved
                log.warning("rollout %d of %s: %s; retrying", r["id"], r["version"], exc)
        return True

    def advance(self, r: Mapping[str, Any]) -> str:
        """Move one rollout on as far as the store's windows allow; returns its state now."""
        if r["state"] == "pending":
            return self._start_shadow(r) if r.get("shadow") else self._start(r)
        if r["state"] == "shadow":
            return self._watch_shadow(r)
        if r["state"] == "canary":
            return self._watch(r)
        return str(r["state"])

    def _fail(self, r: Mapping[str, Any], why: str) -> str:
        log.error("rollout %d of %s failed: %s", r["id"], r["version"], why)
        if r["state"] == "shadow":
            self.publisher.withdraw_shadow(tuple(r["targets"]))
        self.book.move(r["id"], r["state"], "failed", f"failed: {why}", finished=self.clock())
        return "failed"

    # the shadow stage ------------------------------------------------------------------------------

    def _start_shadow(self, r: Mapping[str, Any]) -> str:
        version, targets = r["version"], tuple(r["targets"])
        cameras = self.book.cameras_matching(targets)
        if not cameras:
            return self._fail(r, f"no windows from {', '.join(targets)} to shadow")
        upto = self.book.last_metric_id()
        rule = dict(r["shadow"])
        try:
            self.publisher.publish(
                self.store, version, targets, status="shadow", role="shadow",
                why=f"shadow of rollout {r['id']} on {', '.join(cameras)}: scores beside {r['parent']}, "
                f"judged on {rule['labels']} labelled disagreements",
            )  # fmt: skip
        except ModelError as exc:
            return self._fail(r, str(exc))
        now = self.clock()
        shadow = {**rule, "started": now, "upto": upto, **_shadow_figures(Pairs(), Agreement(), None, rule)}
        reason = f"shadow on {', '.join(cameras)}: needs {rule['labels']} labelled disagreements"
        self.book.move(r["id"], "pending", "shadow", reason, cameras=cameras, upto=upto, shadow=shadow)
        log.info("rollout %d: %s scores in shadow on %s", r["id"], version, ", ".join(cameras))
        return "shadow"

    def _watch_shadow(self, r: Mapping[str, Any]) -> str:
        version, targets = r["version"], tuple(r["targets"])
        rule = dict(r["shadow"])
        windows: dict[str, list[dict[str, Any]]] = {}
        refusals: list[str] = []
        for camera in r["cameras"] or []:
            windows[camera] = [w for _, w in self.book.windows(camera, after=int(rule["upto"]))]
            refusals += [
                f"{camera}: {ref.get('reason')}"
                for w in windows[camera]
                for ref in w.get("model_refused") or ()
                if ref.get("version") == version
            ]
        counts = self.store.disagreement_book().pairs(version, targets)
        pairs = Pairs(counts["candidate_right"], counts["serving_right"])
        agreed = agreement(windows, version)
        if refusals:
            decision = Decision("rollback", "refused by a canary camera: " + "; ".join(refusals), None)
        else:
            decision = decide(pairs, agreed, _paired(r), self.clock() - float(rule["started"]))
        shadow = {**rule, **_shadow_figures(pairs, agreed, decision.p_value, rule), **counts}
        if decision.action == "wait":
            self.book.note(r["id"], shadow, f"shadow running: {decision.reason}", state="shadow")
            return "shadow"
        if decision.action == "promote":
            self.book.note(r["id"], shadow, f"shadow passed: {decision.reason}", state="shadow")
            return self._start({**r, "shadow": shadow}, after=f"shadow passed: {decision.reason}")
        why = f"rolled back in shadow on {', '.join(targets)} (kept {r['parent']}): {decision.reason}"
        self.publisher.withdraw_shadow(targets)
        if self.book.move(r["id"], "shadow", "rolled_back", why, finished=self.clock(), shadow=shadow):
            self.store.set_model_status(version, "rolled_back", why)
            self.stats["rolled_back"] += 1
            log.warning("rollout %d: %s %s", r["id"], version, why)
        return "rolled_back"

    # the canary stage ------------------------------------------------------------------------------

    def _start(self, r: Mapping[str, Any], after: str = "") -> str:
        policy, version, targets = _policy(r), r["version"], tuple(r["targets"])
        upto = self.book.last_metric_id()
        keep = max(policy.windows, 3)
        baseline: dict[str, Figures] = {}
        for camera in self.book.cameras_matching(targets):
            before = [
                w
                for _, w in self.book.windows(camera, upto=upto, newest=keep * 3)
                if w.get("model_version") != version
            ]
            found = figures(before[-keep:], camera)
            if found.windows:
                baseline[camera] = found
        if not baseline:
            return self._fail(r, f"no windows from {', '.join(targets)} before the canary to compare with")
        cams = ", ".join(baseline)
        try:
            self.publisher.publish(
                self.store, version, targets, status="canary",
                why=f"canary of rollout {r['id']} on {cams}, {policy.windows} windows each against their last {keep}",
            )  # fmt: skip
        except ModelError as exc:
            return self._fail(r, str(exc))
        base = {c: f.to_dict() for c, f in baseline.items()}
        reason = f"canary on {cams}: waiting for {policy.windows} windows each"
        reason = f"{after}; {reason}" if after else reason
        self.book.move(
            r["id"],
            r["state"],
            "canary",
            reason,
            started=self.clock(),
            upto=upto,
            cameras=list(baseline),
            baseline=base,
        )
        log.info("rollout %d: %s published to %s; baseline %s", r["id"], version, cams, base)
        return "canary"

    def _watch(self, r: Mapping[str, Any]) -> str:
        version, targets = r["version"], tuple(r["targets"])
        baseline = {c: Figures.from_dict(d) for c, d in (r["baseline"] or {}).items()}
        canary: dict[str, Figures] = {}
        refusals: list[str] = []
        for camera in r["cameras"] or []:
            windows = [w for _, w in self.book.windows(camera, after=r["upto"] or 0)]
            canary[camera] = figures([w for w in windows if w.get("model_version") == version], camera)
            refusals += [
                f"{camera}: {ref.get('reason')}"
                for w in windows
                for ref in w.get("model_refused") or ()
                if ref.get("version") == version
            ]
        now = self.clock()
        verdict = judge(baseline, canary, refusals, _policy(r), now - (r["started"] or now))
        figs = {c: f.to_dict() for c, f in canary.items()}
        if verdict.action == "wait":
            self.book.note(r["id"], figs, f"canary running: {verdict.reason}")
            return "canary"
        if verdict.action == "promote":
            why = f"promoted by rollout {r['id']}: {verdict.reason}"
            self.publisher.publish(self.store, version, None, status="published", why=why)
            if self.book.move(r["id"], "canary", "promoted", why, finished=self.clock(), figures=figs):
                self.stats["promoted"] += 1
                log.info("rollout %d: %s", r["id"], why)
            return "promoted"
        why = f"rolled back on {', '.join(targets)} to {r['parent']}: {verdict.reason}"
        self.publisher.publish(
            self.store,
            r["parent"],
            targets,
            status="published",
            why=f"rollback of {version} by rollout {r['id']}",
        )
        if self.book.move(r["id"], "canary", "rolled_back", why, finished=self.clock(), figures=figs):
            self.store.set_model_status(version, "rolled_back", why)
            self.stats["rolled_back"] += 1
            log.warning("rollout %d: %s %s", r["id"], version, why)
        return "rolled_back"

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop`; one failed tick is logged and the next one tries again."""
        try:
            while not stop.is_set():
                self.health.begin()
                try:
                    self.tick()
                    self.health.done()
                except Exception:  # the store or the broker hiccuped; the state is in the store, retry
                    self.stats["errors"] += 1
                    log.exception("rollout watcher: tick failed; retrying in %gs", self.interval)
                stop.wait(self.interval)
        finally:
            try:
                self.lease.release()
            except Exception as exc:
                log.warning("rollout watcher: releasing the lease: %s", exc)


def _shadow_figures(
    pairs: Pairs, agreed: Agreement, p_value: float | None, rule: Mapping[str, Any]
) -> dict[str, Any]:
    """The shadow stage's figures as GET /rollouts/{id} shows them under ``shadow``."""
    return {
        **agreed.to_dict(),
        "candidate_right": pairs.candidate_right,
        "serving_right": pairs.serving_right,
        "p_value": p_value,
        "needed": max(int(rule["labels"]) - pairs.n, 0),
    }


def rollback(
    store: Store,
    publisher: Publisher,
    version: str | None = None,
    cameras: Sequence[str] | None = None,
    *,
    who: str = "metro-app rollback",
    force: bool = False,
) -> dict[str, Any]:
    """Roll back by hand: end any running canary, then publish `version` (default: the parent of the
    current model) to every camera or to `cameras`.

    Without a version or cameras, ending a running canary (its parent back on its canary
    cameras) is the whole rollback. A version that never served (never published, never a
    canary: an imported candidate, say) needs `force`. Returns what was done.
    """
    book = store.rollout_book()
    ended = []
    for r in book.active():
        targets = tuple(r["targets"])
        if r["state"] == "canary":
            publisher.publish(store, r["parent"], targets, why=f"rollback of {r['version']} by hand ({who})")
        elif r["state"] == "shadow":
            publisher.withdraw_shadow(targets)
        why = f"rolled back by hand ({who}) on {', '.join(targets)} to {r['parent']}"
        if book.move(r["id"], r["state"], "rolled_back", why, finished=time.time()):
            if r["state"] in ("canary", "shadow"):
                store.set_model_status(r["version"], "rolled_back", why)
            ended.append(
                {"rollout": r["id"], "version": r["version"], "parent": r["parent"], "targets": list(targets)}
            )
    if ended and version is None and cameras is None:
        return {"ended": ended, "published": None, "targets": None}
    current = store.current_model()
    target = version or (current or {}).get("parent")
    if not target:
        raise ModelError("nothing to roll back to: the current model has no parent; name a VERSION")
    check_model(store, target)
    row = store.model(target) or {}
    served = any(e["status"] in ("serving", "published", "canary") for e in row.get("events", ()))
    if not served and not force:
        raise ModelError(
            f"model {target} has never served (status {row.get('status')}): it was never published nor a "
            "canary; roll back to it only with --force"
        )
    audience = tuple(cameras) if cameras else None
    where = "every camera" if audience is None else ", ".join(audience)
    publisher.publish(store, target, audience, why=f"rollback by hand ({who}) on {where}")
    if audience is None and current is not None and current["version"] != target:
        store.set_model_status(current["version"], "rolled_back", f"rolled back by hand ({who}) to {target}")
    return {"ended": ended, "published": target, "targets": None if audience is None else list(audience)}


def wait_for(store: Store, rollout_id: int, timeout: float, poll: float = 1.0) -> dict[str, Any]:
    """The rollout once it is promoted, rolled back or failed (or as it stands after `timeout`)."""
    book = store.rollout_book()
    deadline = time.monotonic() + timeout
    while True:
        r = book.get(rollout_id)
        if r is None:
            raise ConfigError(f"no rollout {rollout_id}")
        if r["state"] in _TERMINAL or time.monotonic() >= deadline:
            return r
        time.sleep(poll)
