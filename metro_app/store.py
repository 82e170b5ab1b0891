"""The hub's durable store: SQLAlchemy Core over SQLite (default) or PostgreSQL.

Every write is idempotent on the message id (INSERT .. ON CONFLICT DO NOTHING),
so a message Kafka delivers twice is stored once, and a batch is written in one
transaction, so the consumer can commit offsets right after it. Row ids are the
views' sequence numbers: on PostgreSQL, writers serialise on an advisory lock
so that ids become visible in increasing order and a reader paging by id
never skips a row that a slower transaction commits later.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from edgemnist.errors import ModelError
from edgemnist.messages import MetricsMessage, UncertainImage
from metro_app._engine import make_engine
from metro_app._items import IMAGE_COLS, METRIC_COLS, Item, message_item
from metro_app._registry import model_dict
from metro_app._rows import FLEET_BUCKET_SECONDS, image_row_to_dict, iso, label_dict
from metro_app._schema import (
    MODEL_STATUSES,
    add_missing_columns,
    alerts,
    dead_letters,
    images,
    label_resolutions,
    labels,
    metadata,
    metric_cameras,
    metrics,
    model_events,
    model_registry,
    training_images,
)
from metro_app.trainset import CONFLICT, settle_labels

__all__ = ["DeadLetter", "WriteResult", "Store", "FLEET_BUCKET_SECONDS", "image_row_to_dict"]

_PG_WRITE_LOCK = 0x4D4554524F
_CAMERA_COLS = (
    "metric_id",
    "camera",
    "certain",
    "uncertain",
)  # "METRO": one advisory lock for every hub writing to the store


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


class Store:
    """Metrics windows, uncertain and training images, labels, the model registry and dead letters."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        metadata.create_all(self.engine)
        add_missing_columns(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def _begin_write(self, conn: Connection) -> None:
        if self.engine.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_WRITE_LOCK)))

    def _insert_new(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> list[Any]:
        """Insert rows whose msg_id is new; returns (id, msg_id) of the rows added."""
        if not rows:
            return []
        cols = tuple(rows[0])
        return self._insert_tuples(conn, table, cols, [tuple(r[c] for c in cols) for r in rows])

    def _insert_tuples(
        self, conn: Connection, table: sa.Table, cols: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> list[Any]:
        """One plain executemany with conflict-ignore; returns (id, msg_id) of the rows added, ascending.

        ON CONFLICT DO NOTHING skips only rows whose msg_id is stored; any other constraint still
        raises (and the hub splits the batch to find the record). Writers hold the table's write
        lock until the transaction ends (SQLite's database lock; on PostgreSQL the advisory lock
        every writer of these tables takes first), so the rows added are the `rowcount` highest
        ids, read in the same transaction. No SQLAlchemy compile and no RETURNING per batch.
        """
        if not rows:
            return []
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        names = ", ".join(f'"{c}"' for c in cols)
        sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join([mark] * len(cols))}) ON CONFLICT DO NOTHING'
        added = conn.exec_driver_sql(sql, rows).rowcount
        if added <= 0:
            return []
        newest = f'SELECT id, msg_id FROM "{table.name}" ORDER BY id DESC LIMIT {int(added)}'
        return conn.exec_driver_sql(newest).all()[::-1]

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
        for m in (*metric_msgs, *image_msgs):
            item = message_item(m, bodies.get(m.id))  # type: ignore[arg-type]
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
                conn.exec_driver_sql(*_plain_insert(conn, metric_cameras, _CAMERA_COLS, cams))
            new_images = self._insert_tuples(
                conn, images, IMAGE_COLS, [(*it.row, now, it.content_hash) for it in iitems]
            )
            out.images = len(new_images)
            out.conflicts = self._conflicts(conn, metrics, mitems, new_metrics)
            out.conflicts.update(self._conflicts(conn, images, iitems, new_images))
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

    def _rows(self, query: sa.Select) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(query))

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
        q = sa.select(images).where(images.c.id > after).order_by(images.c.id).limit(limit)
        return [(r.id, image_row_to_dict(r)) for r in self._rows(q)]

    def image(self, msg_id: str) -> Any | None:
        rows = self._rows(sa.select(images).where(images.c.msg_id == msg_id))
        return rows[0] if rows else None

    def last_ids(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            m = conn.execute(sa.select(sa.func.coalesce(sa.func.max(metrics.c.id), 0))).scalar_one()
            i = conn.execute(sa.select(sa.func.coalesce(sa.func.max(images.c.id), 0))).scalar_one()
        return {"metrics": int(m), "images": int(i)}

    def counts(self) -> dict[str, int]:
        out = {}
        with self.engine.connect() as conn:
            for name, table in (
                ("metrics", metrics),
                ("images", images),
                ("labels", labels),
                ("dead_letters", dead_letters),
                ("models", model_registry),
                ("training_images", training_images),
            ):
                out[name] = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
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
        c = images.c
        right = sa.func.sum(sa.case((c.result_class == c.true_class, 1), else_=0))
        q = sa.select(c.camera, sa.func.count(), sa.func.count(c.true_class), right).group_by(c.camera)
        return {r[0]: (int(r[1]), int(r[2]), int(r[3] or 0)) for r in self._rows(q)}

    def camera_windows(self, camera: str, n: int) -> list[dict[str, Any]]:
        """The camera's newest n metrics messages, oldest first."""
        q = (
            sa.select(metrics.c.body)
            .join(metric_cameras, metric_cameras.c.metric_id == metrics.c.id)
            .where(metric_cameras.c.camera == camera)
            .order_by(metrics.c.id.desc())
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

    # labels and models --------------------------------------------------------------------------

    def add_label(self, image_id: str, label: str, labeller: str) -> dict[str, Any] | None:
        """Store a person's label for a stored image; None when the image is unknown."""
        img = self.image(image_id)
        if img is None:
            return None
        row = {
            "image_id": image_id,
            "label": label,
            "labeller": labeller,
            "created": time.time(),
            "model_version": img.model_version,
            "previous_prediction": img.result_class,
        }
        with self.engine.begin() as conn:
            row["id"] = conn.execute(sa.insert(labels).returning(labels.c.id), row).scalar_one()
        return label_dict(row)

    def labels(self, after: int = 0, limit: int = 1000, image_id: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(labels).where(labels.c.id > after)
        if image_id is not None:
            q = q.where(labels.c.image_id == image_id)
        return [label_dict(r._asdict()) for r in self._rows(q.order_by(labels.c.id).limit(limit))]

    def add_training_images(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Store labelled images from other systems (control-topic training events); returns how many were new.

        Each item has ``id``, ``image`` (base64 PNG), ``source``, ``label`` and ``labeller``.
        Idempotent on the id: an image stored before adds neither a row nor a label.
        """
        if not items:
            return 0
        now = time.time()
        rows = list(
            {i["id"]: {"msg_id": i["id"], "source": i["source"], "image": i["image"], "received": now}
             for i in items}.values()
        )  # fmt: skip
        by_id = {i["id"]: i for i in items}
        with self.engine.begin() as conn:
            self._begin_write(conn)
            new = self._insert_new(conn, training_images, rows)
            label_rows = [
                {
                    "image_id": r.msg_id,
                    "label": str(by_id[r.msg_id]["label"]),
                    "labeller": by_id[r.msg_id]["labeller"],
                    "created": now,
                    "model_version": None,
                    "previous_prediction": None,
                }
                for r in new
            ]
            if label_rows:
                conn.execute(sa.insert(labels), label_rows)
        return len(new)

    def training_image(self, msg_id: str) -> Any | None:
        rows = self._rows(sa.select(training_images).where(training_images.c.msg_id == msg_id))
        return rows[0] if rows else None

    def latest_labels(self) -> list[tuple[str, str, str]]:
        """(image id, settled label, base64 PNG) of every labelled image, by its latest label, oldest first.

        The label is settled by `metro_app.trainset.settle_labels` (each labeller's latest label,
        the majority, a resolution); an image whose labellers disagree comes back with the label
        `trainset.CONFLICT`, which retrain leaves out and counts.
        """
        settled = self.settled_labels()
        pngs = self._pngs(list(settled))
        order = sorted(settled.values(), key=lambda s: s.last_id)
        return [
            (s.image_id, s.label if s.label is not None else CONFLICT, pngs[s.image_id])
            for s in order
            if s.image_id in pngs
        ]

    def _pngs(self, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for k in range(0, len(ids), 500):
            part = list(ids[k : k + 500])
            for table in (training_images, images):  # an uncertain image wins over a training image
                q = sa.select(table.c.msg_id, table.c.image).where(table.c.msg_id.in_(part))
                out.update((r.msg_id, r.image) for r in self._rows(q))
        return out

    def frames_for(self, labelled: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """(image id, label, base64 PNG) for (image id, label) pairs from elsewhere, as `latest_labels` returns them.

        Lets a retrain take its labels from the labels table's change stream while the
        images still come from this store; pairs whose image the store lacks are left out.
        """
        found: dict[str, str] = {}
        wanted = sorted({image_id for image_id, _ in labelled})
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            for table in (training_images, images):
                q = sa.select(table.c.msg_id, table.c.image).where(table.c.msg_id.in_(part))
                found |= {r.msg_id: r.image for r in self._rows(q)}
        return [(i, label, found[i]) for i, label in labelled if i in found]

    # the model registry -------------------------------------------------------------------------

    def add_model(
        self,
        version: str,
        sha256: str,
        data: bytes,
        *,
        parent: str | None = None,
        status: str = "candidate",
        reason: str = "",
        card: Mapping[str, Any] | None = None,
        created: float | None = None,
    ) -> bool:
        """Register a model with its skops bytes and first event; False when the version exists."""
        _check_status(status)
        now = time.time()
        row = {
            "version": version,
            "sha256": sha256,
            "parent": parent,
            "status": status,
            "created": created if created is not None else now,
            "updated": now,
            "reason": reason,
            "card": json.dumps(dict(card or {})),
            "data": data,
        }
        with self.engine.begin() as conn:
            self._begin_write(conn)
            stmt = self._insert(model_registry).on_conflict_do_nothing().returning(model_registry.c.version)
            if not list(conn.execute(stmt, [row])):
                return False
            conn.execute(
                sa.insert(model_events), {"version": version, "status": status, "time": now, "reason": reason}
            )
        return True

    def set_model_status(self, version: str, status: str, reason: str) -> None:
        """Move a model to `status`, keeping the transition (time, reason) as an event."""
        _check_status(status)
        now = time.time()
        with self.engine.begin() as conn:
            self._begin_write(conn)
            updated = conn.execute(
                sa.update(model_registry)
                .where(model_registry.c.version == version)
                .values(status=status, updated=now, reason=reason)
            ).rowcount
            if not updated:
                raise ModelError(f"no model version {version!r} in the registry")
            conn.execute(
                sa.insert(model_events), {"version": version, "status": status, "time": now, "reason": reason}
            )

    def _model_rows(self, where: Any = None) -> list[dict[str, Any]]:
        cols = [c for c in model_registry.c if c.name != "data"]
        q = sa.select(*cols)
        if where is not None:
            q = q.where(where)
        rows = self._rows(q.order_by(model_registry.c.created.desc(), model_registry.c.version.desc()))
        eq = sa.select(model_events).order_by(model_events.c.id)
        if where is not None:
            eq = eq.where(model_events.c.version.in_([r.version for r in rows]))
        events: dict[str, list[Any]] = {}
        for e in self._rows(eq):
            events.setdefault(e.version, []).append(e)
        return [model_dict(r, events.get(r.version, [])) for r in rows]

    def models(self) -> list[dict[str, Any]]:
        """Every registered model, newest first, with its events."""
        return self._model_rows()

    def model(self, version: str) -> dict[str, Any] | None:
        found = self._model_rows(model_registry.c.version == version)
        return found[0] if found else None

    def model_file(self, version: str) -> bytes | None:
        rows = self._rows(sa.select(model_registry.c.data).where(model_registry.c.version == version))
        return bytes(rows[0].data) if rows else None

    def current_model(self) -> dict[str, Any] | None:
        """The model the fleet should run: the most recently published one still published."""
        q = (
            sa.select(model_registry.c.version)
            .where(model_registry.c.status == "published")
            .order_by(model_registry.c.updated.desc(), model_registry.c.created.desc())
            .limit(1)
        )
        rows = self._rows(q)
        return self.model(rows[0].version) if rows else None

    def dead_letters(self, after: int = 0, limit: int = 1000) -> list[DeadLetter]:
        q = sa.select(dead_letters).where(dead_letters.c.id > after).order_by(dead_letters.c.id).limit(limit)
        return [DeadLetter(r.topic, r.partition, r.offset, r.reason) for r in self._rows(q)]

    # label quality --------------------------------------------------------------------------------

    def label_votes(self) -> list[dict[str, Any]]:
        """Every label row (id, image_id, label, labeller, created), oldest first."""
        c = labels.c
        q = sa.select(c.id, c.image_id, c.label, c.labeller, c.created).order_by(c.id)
        return [r._asdict() for r in self._rows(q)]

    def add_resolution(self, image_id: str, label: str, resolver: str) -> dict[str, Any] | None:
        """Settle an image's label whatever its labellers said; None when the image is unknown."""
        if self.image(image_id) is None and self.training_image(image_id) is None:
            return None
        row = {"image_id": image_id, "label": label, "resolver": resolver, "created": time.time()}
        with self.engine.begin() as conn:
            row["id"] = conn.execute(
                sa.insert(label_resolutions).returning(label_resolutions.c.id), row
            ).scalar_one()
        return {**row, "created": iso(row["created"])}

    def resolutions(self) -> list[dict[str, Any]]:
        c = label_resolutions.c
        q = sa.select(c.id, c.image_id, c.label, c.resolver, c.created).order_by(c.id)
        return [r._asdict() for r in self._rows(q)]

    def settled_labels(self) -> dict[str, Any]:
        """Image id -> `trainset.Settled` for every labelled image."""
        return settle_labels(self.label_votes(), self.resolutions())

    def image_cameras(self, ids: Sequence[str]) -> dict[str, str]:
        """Image id -> camera, for the uncertain images among `ids`."""
        out: dict[str, str] = {}
        for k in range(0, len(ids), 500):
            q = sa.select(images.c.msg_id, images.c.camera).where(images.c.msg_id.in_(list(ids[k : k + 500])))
            out.update((r.msg_id, r.camera) for r in self._rows(q))
        return out

    def label_marks(self) -> tuple[int, int]:
        """(highest label id, highest resolution id): label quality changes only when these do."""
        with self.engine.connect() as conn:
            a = conn.execute(sa.select(sa.func.coalesce(sa.func.max(labels.c.id), 0))).scalar_one()
            b = conn.execute(sa.select(sa.func.coalesce(sa.func.max(label_resolutions.c.id), 0))).scalar_one()
        return int(a), int(b)

    # alerts ---------------------------------------------------------------------------------------

    def metrics_after(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Metrics rows with id > after, ascending: what the drift monitor has not seen yet."""
        return self.metrics_page(after, limit)

    def add_alert(
        self, key: str, camera: str, signal: str, started: str, message: str, evidence: Mapping[str, Any]
    ) -> int | None:
        """Open an alert; None when its key exists or the camera has an open alert on that signal."""
        c = alerts.c
        row = {
            "key": key,
            "camera": camera,
            "signal": signal,
            "started": started,
            "raised": time.time(),
            "status": "open",
            "message": message,
            "evidence": json.dumps(dict(evidence)),
        }
        with self.engine.begin() as conn:
            self._begin_write(conn)
            open_q = sa.select(c.id).where(c.camera == camera, c.signal == signal, c.status == "open")
            if conn.execute(open_q.limit(1)).first() is not None:
                return None
            stmt = self._insert(alerts).on_conflict_do_nothing().returning(c.id)
            got = list(conn.execute(stmt, [row]))
        return int(got[0].id) if got else None

    def close_alerts(self, camera: str, signal: str, reason: str) -> int:
        """Close the camera's open alerts on `signal`; returns how many."""
        c = alerts.c
        with self.engine.begin() as conn:
            self._begin_write(conn)
            return int(
                conn.execute(
                    sa.update(alerts)
                    .where(c.camera == camera, c.signal == signal, c.status == "open")
                    .values(status="closed", closed=time.time(), close_reason=reason)
                ).rowcount
            )

    def alerts(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Alerts, newest first; `status` = open | closed | None (all)."""
        q = sa.select(alerts)
        if status is not None:
            q = q.where(alerts.c.status == status)
        return [_alert_dict(r) for r in self._rows(q.order_by(alerts.c.id.desc()).limit(limit))]

    def claim_unsent_alerts(self) -> list[dict[str, Any]]:
        """Alerts no hub has sent yet, each claimed by this call (so one hub sends each once)."""
        out = []
        for r in self._rows(sa.select(alerts).where(alerts.c.sent.is_(None)).order_by(alerts.c.id)):
            with self.engine.begin() as conn:
                got = conn.execute(
                    sa.update(alerts)
                    .where(alerts.c.id == r.id, alerts.c.sent.is_(None))
                    .values(sent=time.time())
                ).rowcount
            if got:
                out.append(_alert_dict(r))
        return out

    def unclaim_alert(self, alert_id: int) -> None:
        """The send failed: another try later."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(sent=None))


def _alert_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "key": r.key,
        "camera": r.camera,
        "signal": r.signal,
        "started": r.started,
        "raised": iso(r.raised),
        "status": r.status,
        "closed": iso(r.closed) if r.closed is not None else None,
        "close_reason": r.close_reason,
        "message": r.message,
        "evidence": json.loads(r.evidence),
    }


def _plain_insert(
    conn: Connection, table: sa.Table, cols: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> tuple[str, Any]:
    """An executemany INSERT in the connection's own parameter style (no SQLAlchemy compile per batch)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(f'"{c}"' for c in cols)
    return f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join([mark] * len(cols))})', rows


def _check_status(status: str) -> None:
    if status not in MODEL_STATUSES:
        raise ModelError(f"model status {status!r} is not one of {', '.join(MODEL_STATUSES)}")
