"""Retention in the store: old metrics windows rolled up into hourly rows, old unlabelled images deleted.

Part of `metro_app.store` (use it through `Store.retention()`). Each call handles at most one
batch of the oldest rows in one short transaction, so the hub's writers wait for it at most that
long; `metro_app.retention.Pruner` calls it in a loop with a pause between batches.

Age counts from when the hub stored a row (its ``received`` time, the hub's clock), so an edge
whose clock is wrong cannot have its data pruned early. Rows are examined in id order, which is
the order they were stored in, so a batch reads only the oldest ``limit`` rows and never scans
the table. A window's roll-up row is its camera and the UTC hour of the window's own time.

Labelled images (a person's label or a reviewer's resolution), labels, training images, models,
rollouts, alerts, dead letters and audit rows are never touched here.

>>> from metro_app.store import Store
>>> from metro_app.testing import metrics_window
>>> store = Store("sqlite://")
>>> _ = store.write_batch([metrics_window("cam-a", 0, images=40, uncertain=4)], [])
>>> book = store.retention()
>>> book.roll_up(before=0.0)  # nothing stored before the epoch
RollUp(windows=0, hourly_rows=0)
>>> book.roll_up(before=4e9)
RollUp(windows=1, hourly_rows=1)
>>> [(r.camera, r.windows, r.images, r.uncertain) for r in book.hourly()]
[('cam-a', 1, 40, 4)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from metro_app.store.schema import (
    label_resolutions,
    labels,
    metric_cameras,
    metrics,
    metrics_hourly,
    uncertain_images,
)

__all__ = ["HOUR", "RollUp", "RetentionBook"]

HOUR = 3600


@dataclass(frozen=True, slots=True)
class RollUp:
    """What one roll-up batch did: windows deleted and (camera, hour) roll-up rows they went into."""

    windows: int = 0
    hourly_rows: int = 0


def _hour(ts: float) -> int:
    return int(ts // HOUR) * HOUR


class RetentionBook:
    """The store's pruning statements; several hubs may run them at once and never count a window twice.

    A window's counts go into its hourly row in the transaction that deletes it, and only the
    rows this transaction's DELETE returned are counted.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._pg else sqlite.insert

    def _oldest(self, table: sa.Table, before: float, limit: int, after: int = 0) -> list[Any]:
        """The ids (and msg_ids) of the oldest rows stored before `before`: a prefix of the table by id."""
        c = table.c
        q = sa.select(c.id, c.msg_id, c.received).where(c.id > after).order_by(c.id).limit(limit)
        with self._engine.connect() as conn:
            rows = list(conn.execute(q))
        out = []
        for r in rows:
            if r.received >= before:
                break
            out.append(r)
        return out

    def roll_up(self, before: float, limit: int = 500) -> RollUp:
        """Fold at most `limit` of the oldest windows stored before `before` into hourly rows, deleting them."""
        ids = [r.id for r in self._oldest(metrics, before, limit)]
        if not ids:
            return RollUp()
        with self._engine.begin() as conn:
            cams = conn.execute(
                sa.delete(metric_cameras)
                .where(metric_cameras.c.metric_id.in_(ids))
                .returning(metric_cameras.c.metric_id, metric_cameras.c.camera,
                           metric_cameras.c.certain, metric_cameras.c.uncertain)
            ).all()  # fmt: skip
            gone = conn.execute(
                sa.delete(metrics)
                .where(metrics.c.id.in_(ids))
                .returning(metrics.c.id, metrics.c.ts, metrics.c.body)
            ).all()
            sums = _sums(gone, cams)
            self._add_hourly(conn, sums)
        return RollUp(len(gone), len(sums))

    def _add_hourly(self, conn: Connection, sums: dict[tuple[str, int], list[float]]) -> None:
        if not sums:
            return
        h = metrics_hourly.c
        rows = [
            {"camera": cam, "hour": hour, "windows": int(s[0]), "images": int(s[1]), "uncertain": int(s[2]),
             "labelled": int(s[3]), "correct": int(s[4]), "first_ts": s[5], "last_ts": s[6]}
            for (cam, hour), s in sorted(sums.items())
        ]  # fmt: skip
        stmt = self._insert(metrics_hourly)
        new = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[h.camera, h.hour],
            set_={
                **{k: h[k] + new[k] for k in ("windows", "images", "uncertain", "labelled", "correct")},
                "first_ts": sa.case((new.first_ts < h.first_ts, new.first_ts), else_=h.first_ts),
                "last_ts": sa.case((new.last_ts > h.last_ts, new.last_ts), else_=h.last_ts),
            },
        )
        conn.execute(stmt, rows)

    def prune_images(self, before: float, limit: int = 500, after: int = 0) -> tuple[int, int]:
        """Delete the unlabelled ones among at most `limit` of the oldest images stored before `before`.

        Images are examined from id `after` on (the caller keeps the last id examined, so the
        labelled images kept at the table's head are not read again). Returns (deleted, last id
        examined; `after` when none was old enough).
        """
        old = self._oldest(uncertain_images, before, limit, after)
        if not old:
            return 0, after
        ids = [r.id for r in old]
        c = uncertain_images.c
        labelled = sa.exists().where(labels.c.image_id == c.msg_id)
        resolved = sa.exists().where(label_resolutions.c.image_id == c.msg_id)
        with self._engine.begin() as conn:
            gone = conn.execute(
                sa.delete(uncertain_images).where(c.id.in_(ids), ~labelled, ~resolved).returning(c.id)
            ).all()
        return len(gone), ids[-1]

    def hourly(self, camera: str | None = None, newest: int | None = None) -> list[Any]:
        """The roll-up rows (of one camera; its `newest` hours only), oldest hour first."""
        h = metrics_hourly.c
        if newest is None:
            q = sa.select(metrics_hourly).order_by(h.hour, h.camera)
            if camera is not None:
                q = q.where(h.camera == camera)
        else:
            if camera is None:
                raise ValueError("newest hours are counted per camera: name one")
            q = sa.select(metrics_hourly).where(h.camera == camera).order_by(h.hour.desc()).limit(newest)
        with self._engine.connect() as conn:
            rows = list(conn.execute(q))
        return rows if newest is None else rows[::-1]

    def oldest_kept(self) -> dict[str, float | None]:
        """The storage time of the oldest metrics window and uncertain image kept (None: the table is empty)."""
        out: dict[str, float | None] = {}
        with self._engine.connect() as conn:
            for name, table in (("metrics", metrics), ("images", uncertain_images)):
                first = sa.select(table.c.received).order_by(table.c.id).limit(1)
                out[name] = conn.execute(first).scalar()
            out["hourly"] = conn.execute(sa.select(sa.func.min(metrics_hourly.c.hour))).scalar()
        return out


def _sums(windows: Sequence[Any], cams: Sequence[Any]) -> dict[tuple[str, int], list[float]]:
    """(camera, hour) -> [windows, images, uncertain, labelled, correct, first ts, last ts] of deleted windows.

    `labelled` and `correct` belong to a camera only when the window names that one camera
    (what an edge sends), as in the live views.
    """
    by_id = {w.id: w for w in windows}
    per_window: dict[int, list[Any]] = {}
    for c in cams:
        per_window.setdefault(c.metric_id, []).append(c)
    out: dict[tuple[str, int], list[float]] = {}
    for wid, rows in per_window.items():
        w = by_id.get(wid)
        if w is None:  # another transaction deleted the window: it counted it
            continue
        labelled = correct = 0
        if len(rows) == 1:
            body = orjson.loads(w.body)
            labelled, correct = int(body.get("labelled") or 0), int(body.get("correct") or 0)
        for c in rows:
            s = out.setdefault((c.camera, _hour(w.ts)), [0, 0, 0, 0, 0, w.ts, w.ts])
            s[0] += 1
            s[1] += c.certain + c.uncertain
            s[2] += c.uncertain
            s[3] += labelled
            s[4] += correct
            s[5], s[6] = min(s[5], w.ts), max(s[6], w.ts)
    return out
