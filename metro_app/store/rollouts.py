"""Rollouts in the store: the watcher's whole state, so a restarted hub (or another one) carries on.

Every change of state is a compare-and-set (`move`): two hubs, or a hub and
`metro-app rollback`, can never both take a rollout out of the same state.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from edgemnist.errors import ConfigError, ModelError
from edgemnist.wire.envelope import targets_match
from metro_app.store.rows import iso
from metro_app.store.schema import metric_cameras, metrics, rollouts

if TYPE_CHECKING:
    from metro_app.rollout.policy import Policy
    from metro_app.store import Store

__all__ = ["ACTIVE", "STAGES", "RolloutBusy", "RolloutBook", "rollout_dict", "check_model", "with_rollouts"]

ACTIVE = ("pending", "shadow", "canary")
_JSON = ("cameras", "baseline", "figures", "shadow")
# what GET /rollouts/{id} calls each state
STAGES = {"rolled_back": "rolled back"}


class RolloutBusy(ConfigError):
    """Another rollout is still running; one canary at a time keeps the verdicts apart."""


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _parsed(row: Any) -> dict[str, Any]:
    """A rollout row with its JSON columns decoded; times stay epoch seconds (for the watcher)."""
    r = dict(row._asdict() if hasattr(row, "_asdict") else row)
    for key in ("targets", "cameras", "baseline", "figures", "shadow"):
        r[key] = _loads(r.get(key))
    return r


def rollout_dict(row: Any) -> dict[str, Any]:
    """One rollout as the API, the CLI's JSON line and the dashboard show it (times ISO-8601 UTC)."""
    r = _parsed(row)
    seconds = r["finished"] - r["started"] if r["finished"] is not None and r["started"] else None
    out = {
        "rollout": r["id"],
        "stage": STAGES.get(r["state"], r["state"]),
        **r,
        "seconds": None if seconds is None else round(seconds, 3),
    }
    for key in ("created", "updated", "started", "finished"):
        out[key] = iso(r[key]) if r[key] is not None else None
    return out


class RolloutBook:
    """Rollout rows, and the metrics windows their verdicts are made of."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._engine = store.engine

    def _rows(self, query: Any) -> list[Any]:
        with self._engine.connect() as conn:
            return list(conn.execute(query))

    def add(self, version: str, parent: str, targets: Sequence[str], policy: Policy, trigger: str) -> int:
        """Register a pending rollout; RolloutBusy names the rollout still running."""
        now = time.time()
        row = {
            "version": version,
            "parent": parent,
            "targets": json.dumps(list(targets)),
            "windows": policy.windows,
            "max_accuracy_drop": policy.max_accuracy_drop,
            "max_uncertain_rise": policy.max_uncertain_rise,
            "timeout": policy.timeout,
            "min_images": policy.min_images,
            "shadow": None if policy.shadow_rule() is None else json.dumps(policy.shadow_rule()),
            "state": "pending",
            "trigger": trigger[:300],
            "created": now,
            "updated": now,
            "reason": f"registered by {trigger}: {version} to {', '.join(targets)}"
            + (" in shadow, then as a canary" if policy.shadow else " as a canary")
            + ", then every camera",
        }
        with self._engine.begin() as conn:
            self.store._begin_write(conn)  # PostgreSQL: one registration at a time, so the check holds
            busy = conn.execute(
                sa.select(rollouts.c.id, rollouts.c.version).where(rollouts.c.state.in_(ACTIVE))
            ).first()
            if busy is not None:
                raise RolloutBusy(
                    f"rollout {busy.id} of {busy.version} is still running; wait for it or "
                    "`metro-app rollback` it first"
                )
            return int(conn.execute(sa.insert(rollouts).returning(rollouts.c.id), row).scalar_one())

    def move(self, rollout_id: int, old: str, new: str, reason: str, **values: Any) -> bool:
        """Change state `old` -> `new` unless someone else moved it first; False then."""
        values = {k: json.dumps(v) if k in _JSON else v for k, v in values.items()}
        with self._engine.begin() as conn:
            return bool(
                conn.execute(
                    sa.update(rollouts)
                    .where(rollouts.c.id == rollout_id, rollouts.c.state == old)
                    .values(state=new, reason=reason, updated=time.time(), **values)
                ).rowcount
            )

    def note(self, rollout_id: int, figures: dict[str, Any], reason: str, *, state: str = "canary") -> None:
        """Keep the figures so far (shown while it runs): the canary's, or with state "shadow" the
        shadow stage's (`figures` is then the whole ``shadow`` column)."""
        column = "shadow" if state == "shadow" else "figures"
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(rollouts)
                .where(rollouts.c.id == rollout_id, rollouts.c.state == state)
                .values({column: json.dumps(figures), "reason": reason, "updated": time.time()})
            )

    def get(self, rollout_id: int) -> dict[str, Any] | None:
        rows = self._rows(sa.select(rollouts).where(rollouts.c.id == rollout_id))
        return rollout_dict(rows[0]) if rows else None

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        return [
            rollout_dict(r)
            for r in self._rows(sa.select(rollouts).order_by(rollouts.c.id.desc()).limit(limit))
        ]

    def active(self) -> builtins.list[dict[str, Any]]:
        """Rollouts still pending or on their canary, oldest first, with epoch-second times."""
        q = sa.select(rollouts).where(rollouts.c.state.in_(ACTIVE)).order_by(rollouts.c.id)
        return [_parsed(r) for r in self._rows(q)]

    def latest_by_version(self) -> dict[str, dict[str, Any]]:
        """Each model's newest rollout."""
        out: dict[str, dict[str, Any]] = {}
        for r in self._rows(sa.select(rollouts).order_by(rollouts.c.id)):
            out[r.version] = rollout_dict(r)
        return out

    # the windows a verdict is made of ------------------------------------------------------------

    def last_metric_id(self) -> int:
        return int(self._rows(sa.select(sa.func.coalesce(sa.func.max(metrics.c.id), 0)))[0][0])

    def cameras_matching(self, targets: Iterable[str]) -> builtins.list[str]:
        """Full names of the cameras with stored windows that a canary to `targets` reaches."""
        targets = list(targets)
        names = self._rows(sa.select(metric_cameras.c.camera).distinct())
        return sorted(r.camera for r in names if targets_match(r.camera, targets))

    def windows(
        self, camera: str, *, after: int = 0, upto: int | None = None, newest: int | None = None
    ) -> builtins.list[tuple[int, dict[str, Any]]]:
        """(metrics row id, message) of one camera's windows with after < id <= upto, oldest first.

        With `newest`, only the newest that many.
        """
        q = (
            sa.select(metrics.c.id, metrics.c.body)
            .join(metric_cameras, metric_cameras.c.metric_id == metrics.c.id)
            .where(metric_cameras.c.camera == camera, metrics.c.id > after)
        )
        if upto is not None:
            q = q.where(metrics.c.id <= upto)
        if newest is not None:
            rows = self._rows(q.order_by(metrics.c.id.desc()).limit(newest))[::-1]
        else:
            rows = self._rows(q.order_by(metrics.c.id))
        return [(r.id, orjson.loads(r.body)) for r in rows]


def check_model(store: Store, version: str) -> dict[str, Any]:
    """The registered model, or ModelError naming the version."""
    model = store.model(version)
    if model is None:
        raise ModelError(
            f"no model version {version!r} in the registry (register it with `metro-app models import`)"
        )
    return model


def with_rollouts(
    models: list[dict[str, Any]], latest: dict[str, dict[str, Any]]
) -> builtins.list[dict[str, Any]]:
    """Registry rows with each model's newest rollout (state, canary cameras, figures) under "rollout"."""
    return [{**m, "rollout": latest.get(m["version"])} for m in models]
