"""The store's camera health table: one row per camera, kept by the write that stores its windows.

Part of `metro_app.store` (import `Store` from there). `EventTables.write_items` calls
`_update_health` in the transaction that inserts the rows, under the store's write lock (SQLite's
database lock; on PostgreSQL the advisory lock every writer takes), so several hubs sharing one
PostgreSQL keep one truth and a reader never sees a window stored without its camera's health.
Reads page, sort and filter that table in the database: a request costs the same with 10
cameras or 10,000, and nothing re-reads the windows. A store written before the table existed is
filled once, from its windows, when a hub opens it (`rebuild_camera_health`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from metro_app.store.base import StoreBase, placeholder, plain_insert
from metro_app.store.camerarows import (
    WindowFacts,
    add_window,
    empty_row,
    finish,
    fold_images,
    opened,
    window_facts,
)
from metro_app.store.schema import alerts, camera_health, metric_cameras, metrics, uncertain_images

__all__ = ["SORTS", "CameraTables"]

_H = camera_health.c
_NULL_LAST = {"accuracy": _H.accuracy, "uncertain": _H.uncertain_share, "p99": _H.p99}
# worst first, ties by name so the order never changes between two requests of the same data
SORTS: dict[str, tuple[Any, ...]] = {
    "accuracy": (_H.accuracy.is_(None), _H.accuracy.asc(), _H.camera.asc()),
    "uncertain": (_H.uncertain_share.is_(None), _H.uncertain_share.desc(), _H.camera.asc()),
    "p99": (_H.p99.is_(None), _H.p99.desc(), _H.camera.asc()),
    "name": (_H.camera.asc(),),
}
_CHUNK = 500
_COLS = tuple(c.name for c in camera_health.columns)


class CameraTables(StoreBase):
    """Camera health rows: folded on write, paged and sorted on read."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # INSERT ... ON CONFLICT (camera) DO UPDATE in the driver's own style, built once (no compile per batch)
        with self.engine.connect() as conn:
            sql, _ = plain_insert(conn, camera_health, _COLS, [])
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in _COLS if c != "camera")
        self._health_upsert = f'{sql} ON CONFLICT ("camera") DO UPDATE SET {sets}'
        names = ", ".join(f'"{c}"' for c in _COLS)
        self._health_select = f'SELECT {names} FROM "{camera_health.name}" WHERE "camera" IN '
        if self._health_missing():
            self.rebuild_camera_health()

    # writes -------------------------------------------------------------------------------------
    def _update_health(
        self,
        conn: Connection,
        windows: Sequence[tuple[int, WindowFacts | str, float]],
        images: Iterable[tuple[str, int, int | None]],
    ) -> None:
        """Fold new metrics rows (id, facts or body, received; ascending ids) and new images (camera,
        result, true class) into the cameras' rows: one read and one upsert for the whole batch, the
        figures over a camera's recent windows computed once however many of its windows it holds."""
        parsed = [(mid, w if isinstance(w, WindowFacts) else window_facts(w), got) for mid, w, got in windows]
        images = list(images)
        names = {cam for _, w, _ in parsed for cam in w.counts} | {cam for cam, _, _ in images}
        if not names:
            return
        rows = self._health_rows(conn, names)
        folding: dict[str, dict[str, Any]] = {}
        for mid, w, got in parsed:
            for cam in w.counts:
                row = folding.get(cam)
                if row is None:
                    row = folding[cam] = opened(rows.get(cam) or empty_row(cam))
                add_window(row, mid, w, got)
        for cam, row in folding.items():
            rows[cam] = finish(row)
        fold_images(rows, images)
        conn.exec_driver_sql(self._health_upsert, [tuple(r[c] for c in _COLS) for r in rows.values()])

    def _health_rows(self, conn: Connection, names: set[str]) -> dict[str, dict[str, Any]]:
        """The stored health rows of some cameras, by name: plain driver SQL, no compile per batch
        (the columns are text and numbers, which the driver returns as SQLAlchemy would)."""
        out: dict[str, dict[str, Any]] = {}
        ordered = sorted(names)
        mark = placeholder(conn)
        for k in range(0, len(ordered), _CHUNK):
            part = ordered[k : k + _CHUNK]
            sql = f"{self._health_select}({', '.join([mark] * len(part))})"
            out.update(
                (r[0], dict(zip(_COLS, r, strict=True))) for r in conn.exec_driver_sql(sql, tuple(part))
            )
        return out

    def _health_missing(self) -> bool:
        with self.engine.connect() as conn:
            have = conn.execute(sa.select(_H.camera).limit(1)).first()
            windows = conn.execute(sa.select(metric_cameras.c.metric_id).limit(1)).first()
        return have is None and windows is not None

    def rebuild_camera_health(self) -> int:
        """Fill the table from every stored window and image (a store an older hub wrote); cameras."""
        with self.engine.begin() as conn:
            self._begin_write(conn)
            conn.execute(camera_health.delete())
            after = 0
            while page := list(
                conn.execute(
                    sa.select(metrics.c.id, metrics.c.body, metrics.c.received)
                    .where(metrics.c.id > after)
                    .order_by(metrics.c.id)
                    .limit(_CHUNK)
                )
            ):
                self._update_health(conn, [(r.id, r.body, r.received) for r in page], ())
                after = page[-1].id
            c = uncertain_images.c
            after = 0
            while page := list(
                conn.execute(
                    sa.select(c.id, c.camera, c.result_class, c.true_class)
                    .where(c.id > after)
                    .order_by(c.id)
                    .limit(5 * _CHUNK)
                )
            ):
                self._update_health(conn, [], [(r.camera, r.result_class, r.true_class) for r in page])
                after = page[-1].id
            return int(conn.execute(sa.select(sa.func.count()).select_from(camera_health)).scalar_one())

    # reads --------------------------------------------------------------------------------------
    def _listed(self, q: str | None = None, alert: bool = False) -> list[Any]:
        """The conditions a listed camera meets: it sent a window; its name holds q; an open alert."""
        where = [_H.windows > 0]
        if q:
            where.append(sa.func.lower(_H.camera).contains(q.lower(), autoescape=True))
        if alert:
            where.append(_H.camera.in_(sa.select(alerts.c.camera).where(alerts.c.status == "open")))
        return where

    def camera_rows(
        self,
        *,
        sort: str = "name",
        limit: int = 50,
        offset: int = 0,
        q: str | None = None,
        alert: bool = False,
        count: bool = True,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(cameras matching (-1 without `count`), one page of their health rows in `sort` order: worst
        first, then name)."""
        if sort not in SORTS:
            raise ValueError(f"sort {sort!r}: use one of {', '.join(SORTS)}")
        where = self._listed(q, alert)
        # sort and skip narrow rows (the name and the sort key), then read the page's whole rows:
        # a page deep in 10,000 cameras does not sort and skip thousands of rows with their windows
        names = sa.select(_H.camera).where(*where).order_by(*SORTS[sort]).limit(limit).offset(offset)
        page = sa.select(camera_health).where(_H.camera.in_(names.scalar_subquery())).order_by(*SORTS[sort])
        with self._connect() as conn:
            n = -1
            if count:
                total = conn.execute(sa.select(sa.func.count()).select_from(camera_health).where(*where))
                n = int(total.scalar_one())
            return n, [dict(r._mapping) for r in conn.execute(page)]

    def camera_rows_after(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Health rows whose newest window has row id > after, ascending by it (the CameraHealth view)."""
        q = sa.select(camera_health).where(_H.seq > after, _H.windows > 0).order_by(_H.seq).limit(limit)
        return [dict(r._mapping) for r in self._rows(q)]

    def camera_rows_named(self, cameras: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The health rows of some cameras, by name (cameras without a window left out)."""
        with self._connect() as conn:
            rows = self._health_rows(conn, set(cameras))
        return {cam: r for cam, r in rows.items() if r["windows"] > 0}

    def camera_row(self, camera: str) -> dict[str, Any] | None:
        rows = self._rows(sa.select(camera_health).where(_H.camera == camera, _H.windows > 0))
        return dict(rows[0]._mapping) if rows else None

    def uncertain_shares(self) -> list[float]:
        """Every listed camera's uncertain share over its recent windows, ascending."""
        q = sa.select(_H.uncertain_share).where(_H.windows > 0, _H.uncertain_share.is_not(None))
        return sorted(r[0] for r in self._rows(q))

    def uncertain_median(self) -> float | None:
        """The median of `uncertain_shares()`, found by the database: one or two values cross the wire.

        One query (row numbers over the sorted shares), so the count and the middle rows come from
        one snapshot; at 10,000 cameras the hub reads 2 rows instead of 10,000 per view request.
        """
        share = _H.uncertain_share
        ranked = (
            sa.select(
                share,
                sa.func.row_number().over(order_by=share).label("rn"),
                sa.func.count().over().label("n"),
            )
            .where(_H.windows > 0, share.is_not(None))
            .subquery()
        )
        r = ranked.c
        # rows (n+1)//2 and (n+2)//2 are the middle (one row when n is odd)
        q = sa.select(r.uncertain_share).where(r.rn.in_([(r.n + 1) // 2, (r.n + 2) // 2])).order_by(r.rn)
        mid = [row[0] for row in self._rows(q)]
        if not mid:
            return None
        return mid[0] if len(mid) == 1 else (mid[0] + mid[1]) / 2

    def camera_counts(self, now: float | None = None) -> dict[str, int]:
        """Cameras listed; active (a window within three of its windows); with an open alert; open alerts."""
        now = time.time() if now is None else now
        open_cams = sa.select(alerts.c.camera).where(alerts.c.status == "open")
        q = sa.select(
            sa.func.count(),
            sa.func.count().filter(_H.expires >= now),
            sa.func.count().filter(_H.camera.in_(open_cams)),
        ).where(*self._listed())
        n_alerts = sa.select(sa.func.count()).select_from(alerts).where(alerts.c.status == "open")
        with self._connect() as conn:
            cameras, active, alerting = conn.execute(q).one()
            return {
                "cameras": int(cameras),
                "active": int(active),
                "alerting": int(alerting),
                "alerts": int(conn.execute(n_alerts).scalar_one()),
            }
