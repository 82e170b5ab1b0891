"""The store's event tables: metrics windows (and their per-camera rows), uncertain images, dead letters.

Part of `metro_app.store` (import `Store` from there). Every write is idempotent on the message id (INSERT .. ON CONFLICT DO NOTHING),
so a message Kafka delivers twice is stored once, and a batch is written in one
transaction, so the consumer can commit offsets right after it. Row ids are the
views' sequence numbers: on PostgreSQL, writers serialise on an advisory lock
so that ids become visible in increasing order and a reader paging by id
never skips a row that a slower transaction commits later.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from edgemnist.wire.messages import MetricsMessage, UncertainImage
from metro_app.store.base import plain_insert
from metro_app.store.camerarows import WindowFacts
from metro_app.store.cameras import CameraTables
from metro_app.store.items import IMAGE_COLS, METRIC_COLS, Item, message_item
from metro_app.store.rows import FLEET_BUCKET_SECONDS, image_row_to_dict
from metro_app.store.schema import (
    dead_letters,
    labels,
    metric_cameras,
    metrics,
    model_registry,
    training_images,
    uncertain_images,
)

__all__ = ["DeadLetter", "WriteResult", "EventTables", "FLEET_BUCKET_SECONDS", "image_row_to_dict"]

_CAMERA_COLS = ("metric_id", "camera", "certain", "uncertain")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the hub refused, and why."""

    topic: str
    partition: int
    offset: int
    reason: str


@dataclass(slots=True)
class WriteResult:
    """How many rows one batch added (duplicates add none), and which ids conflict with stored content."""

    metrics: int = 0
    images: int = 0
    dead_letters: int = 0
    metric_ids: list[int] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)  # msg id -> the stored content hash


class EventTables(CameraTables):
    """What the hub loop writes (metrics windows, uncertain images, dead letters) and the views read."""

    def write_batch(
        self,
        metric_msgs: Sequence[MetricsMessage],
        image_msgs: Sequence[UncertainImage],
        dead: Sequence[DeadLetter] = (),
        bodies: Mapping[str, str] | None = None,
        hashes: Mapping[str, str] | None = None,
    ) -> WriteResult:
        """Store one consumer batch in one transaction; messages must carry an id.

        `bodies` maps a metrics message id to its JSON as received, stored as is (saves re-encoding).
        `hashes` maps a message id to a hash of its content; an id already stored with another
        hash is not written and comes back in `WriteResult.conflicts`. Within the batch the
        first message of an id wins.
        """
        bodies, hashes = bodies or {}, hashes or {}
        items = []
        msgs: list[MetricsMessage | UncertainImage] = [*metric_msgs, *image_msgs]
        for m in msgs:
            item = message_item(m, bodies.get(m.id or ""))
            item.content_hash = hashes.get(item.id)
            items.append(item)
        return self.write_items(items, dead)

    def write_items(self, items: Sequence[Item], dead: Sequence[DeadLetter] = ()) -> WriteResult:
        """`write_batch` for rows built already (the hub's hot path); the first item of an id wins."""
        now = time.time()
        first: dict[str, Item] = {}
        for it in items:
            first.setdefault(it.id, it)
        mitems = [it for it in first.values() if it.is_metrics]
        iitems = [it for it in first.values() if not it.is_metrics]
        out = WriteResult()
        with self.engine.begin() as conn:
            self._begin_write(conn)
            new_metrics = self._insert_tuples(
                conn, metrics, METRIC_COLS, [(*it.row, now, it.content_hash) for it in mitems]
            )
            out.metrics, out.metric_ids = len(new_metrics), [r[0] for r in new_metrics]
            if new_metrics:
                cams_of = {it.id: it.cameras for it in mitems}
                cams = [(mid, cam, c, u) for mid, msg_id in new_metrics for cam, c, u in cams_of[msg_id]]
                conn.exec_driver_sql(*plain_insert(conn, metric_cameras, _CAMERA_COLS, cams))
            new_images = self._insert_tuples(
                conn, uncertain_images, IMAGE_COLS, [(*it.row, now, it.content_hash) for it in iitems]
            )
            out.images = len(new_images)
            self._update_health(conn, _bodies(mitems, new_metrics, now), _image_cams(iitems, new_images))
            out.conflicts = self._conflicts(conn, metrics, mitems, new_metrics)
            out.conflicts.update(self._conflicts(conn, uncertain_images, iitems, new_images))
            out.dead_letters = self._insert_dead(conn, dead, now)
        return out

    def _conflicts(
        self, conn: Connection, table: sa.Table, items: list[Item], new: list[Any]
    ) -> dict[str, str]:
        """Items not inserted because their id is stored with another content hash: id -> stored hash."""
        if len(new) == len(items):
            return {}
        added = {r[1] for r in new}
        mine = {it.id: it.content_hash for it in items if it.id not in added and it.content_hash}
        out: dict[str, str] = {}
        ids = list(mine)
        for k in range(0, len(ids), 500):
            q = sa.select(table.c.msg_id, table.c.content_hash).where(table.c.msg_id.in_(ids[k : k + 500]))
            for r in conn.execute(q):
                if r.content_hash and r.content_hash != mine[r.msg_id]:
                    out[r.msg_id] = r.content_hash
        return out

    def _insert_dead(self, conn: Connection, dead: Sequence[DeadLetter], now: float) -> int:
        if not dead:
            return 0
        rows = [
            {
                "topic": d.topic,
                "partition": d.partition,
                "offset": d.offset,
                "reason": d.reason[:2000].replace("\x00", "\\x00"),
                "received": now,
            }
            for d in dead
        ]
        stmt = self._insert(dead_letters).on_conflict_do_nothing().returning(dead_letters.c.id)
        return len(list(conn.execute(stmt, rows)))

    # reads --------------------------------------------------------------------------------------
    def metrics_page(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        q = (
            sa.select(metrics.c.id, metrics.c.body)
            .where(metrics.c.id > after)
            .order_by(metrics.c.id)
            .limit(limit)
        )
        return [(r.id, orjson.loads(r.body)) for r in self._rows(q)]

    def metrics_upto(self, last_id: int, n: int) -> list[tuple[int, dict[str, Any]]]:
        """The n metrics rows with the highest ids <= last_id, ascending."""
        q = sa.select(metrics.c.id, metrics.c.body).where(metrics.c.id <= last_id)
        rows = self._rows(q.order_by(metrics.c.id.desc()).limit(n))
        return [(r.id, orjson.loads(r.body)) for r in reversed(rows)]

    def images_page(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        q = (
            sa.select(uncertain_images)
            .where(uncertain_images.c.id > after)
            .order_by(uncertain_images.c.id)
            .limit(limit)
        )
        return [(r.id, image_row_to_dict(r)) for r in self._rows(q)]

    def camera_images(self, camera: str, n: int) -> list[tuple[int, dict[str, Any]]]:
        """The camera's newest n uncertain images as (seq, tuple) of `images_page`, oldest first."""
        c = uncertain_images.c
        q = sa.select(uncertain_images).where(c.camera == camera).order_by(c.id.desc()).limit(n)
        return [(r.id, image_row_to_dict(r)) for r in reversed(self._rows(q))]

    def last_ids(self, *names: str) -> dict[str, int]:
        """The newest row id of the metrics and images tables (of those named: "metrics", "images")."""
        tables = {"metrics": metrics, "images": uncertain_images}
        out = {}
        with self._connect() as conn:
            for name in names or tables:
                table = tables[name]
                out[name] = int(
                    conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar_one()
                )
        return out

    def counts(self, *names: str) -> dict[str, int]:
        """Rows in each of the event tables, or in those named (a view's size counts one table, not six)."""
        tables = {
            "metrics": metrics,
            "images": uncertain_images,
            "labels": labels,
            "dead_letters": dead_letters,
            "models": model_registry,
            "training_images": training_images,
        }
        out = {}
        with self._connect() as conn:
            for name in names or tables:
                out[name] = int(
                    conn.execute(sa.select(sa.func.count()).select_from(tables[name])).scalar_one()
                )
        return out

    def fleet_buckets(self, after: int, limit: int) -> list[tuple[int, int]]:
        """(seq, bucket) of fleet time buckets whose newest metrics row id is > after, ascending."""
        seq = sa.func.max(metrics.c.id).label("seq")
        q = sa.select(seq, metrics.c.bucket).group_by(metrics.c.bucket).having(seq > after)
        return [(r.seq, r.bucket) for r in self._rows(q.order_by(seq).limit(limit))]

    def bucket_metrics(self, buckets: Sequence[int], upto: int) -> list[tuple[int, int, dict[str, Any]]]:
        """(id, bucket, body) of every metrics row in those buckets with id <= upto."""
        q = sa.select(metrics.c.id, metrics.c.bucket, metrics.c.body).where(
            metrics.c.bucket.in_(list(buckets)), metrics.c.id <= upto
        )
        return [(r.id, r.bucket, orjson.loads(r.body)) for r in self._rows(q.order_by(metrics.c.id))]

    def fleet_bucket_count(self) -> int:
        q = sa.select(sa.func.count(sa.distinct(metrics.c.bucket)))
        return int(self._rows(q)[0][0])

    def camera_summaries(self) -> list[Any]:
        """Per camera: seq (id of its newest metrics row), windows, images and uncertain images scored."""
        mc = metric_cameras.c
        q = sa.select(
            mc.camera,
            sa.func.max(mc.metric_id).label("seq"),
            sa.func.count().label("windows"),
            sa.func.sum(mc.certain + mc.uncertain).label("images"),
            sa.func.sum(mc.uncertain).label("uncertain"),
        ).group_by(mc.camera)
        return sorted(self._rows(q), key=lambda r: r.seq)

    def camera_image_stats(self) -> dict[str, tuple[int, int, int]]:
        """Per camera: (uncertain images stored, those with true_class, those predicted right)."""
        c = uncertain_images.c
        right = sa.func.sum(sa.case((c.result_class == c.true_class, 1), else_=0))
        q = sa.select(c.camera, sa.func.count(), sa.func.count(c.true_class), right).group_by(c.camera)
        return {r[0]: (int(r[1]), int(r[2]), int(r[3] or 0)) for r in self._rows(q)}

    def camera_windows(self, camera: str, n: int) -> list[dict[str, Any]]:
        """The camera's newest n metrics messages, oldest first (n rows read, in a fleet of any size)."""
        q = (
            sa.select(metrics.c.body)
            .join(metric_cameras, metric_cameras.c.metric_id == metrics.c.id)
            .where(metric_cameras.c.camera == camera)
            .order_by(metric_cameras.c.metric_id.desc())  # the (camera, metric_id) index, read backwards
            .limit(n)
        )
        return [orjson.loads(r.body) for r in reversed(self._rows(q))]

    def recent_windows(self, n: int) -> dict[str, list[dict[str, Any]]]:
        """Every camera's newest n metrics messages, oldest first; each message is parsed once.

        A message naming many cameras is shared by all of them, so the cost is linear in the
        rows read, not in cameras x cameras.
        """
        mc = metric_cameras.c
        rank = sa.func.row_number().over(partition_by=mc.camera, order_by=mc.metric_id.desc()).label("rank")
        ranked = sa.select(mc.camera, mc.metric_id, rank).subquery()
        pairs = self._rows(sa.select(ranked.c.camera, ranked.c.metric_id).where(ranked.c.rank <= n))
        ids = sorted({p.metric_id for p in pairs})
        bodies: dict[int, dict[str, Any]] = {}
        for k in range(0, len(ids), 500):
            q = sa.select(metrics.c.id, metrics.c.body).where(metrics.c.id.in_(ids[k : k + 500]))
            bodies.update((r.id, orjson.loads(r.body)) for r in self._rows(q))
        out: dict[str, list[int]] = {}
        for p in pairs:
            out.setdefault(p.camera, []).append(p.metric_id)
        return {cam: [bodies[i] for i in sorted(mids)] for cam, mids in out.items()}

    def dead_letters(self, after: int = 0, limit: int = 1000) -> list[DeadLetter]:
        q = sa.select(dead_letters).where(dead_letters.c.id > after).order_by(dead_letters.c.id).limit(limit)
        return [DeadLetter(r.topic, r.partition, r.offset, r.reason) for r in self._rows(q)]

    def metrics_after(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Metrics rows with id > after, ascending: what the drift monitor has not seen yet."""
        return self.metrics_page(after, limit)


def _bodies(items: list[Item], new: list[Any], now: float) -> list[tuple[int, WindowFacts | str, float]]:
    """(row id, its facts or else its body, received) of the metrics rows just added, ascending."""
    body = METRIC_COLS.index("body")
    of = {it.id: it.facts or it.row[body] for it in items}
    return [(mid, of[msg_id], now) for mid, msg_id in new]


_IMG = IMAGE_COLS.index("camera"), IMAGE_COLS.index("result_class"), IMAGE_COLS.index("true_class")


def _image_cams(items: list[Item], new: list[Any]) -> list[tuple[str, int, int | None]]:
    """(camera, result class, true class) of the uncertain images just added."""
    cam, result, true = _IMG
    row_of = {it.id: it.row for it in items}
    return [(row_of[m][cam], row_of[m][result], row_of[m][true]) for _, m in new]
