"""The store's labels: people's labels, training images from other systems, resolutions of disagreements.

Part of `metro_app.store` (import `Store` from there).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from metro_app.labels.settle import CONFLICT, settle_labels
from metro_app.store.base import StoreBase
from metro_app.store.rows import iso, label_dict
from metro_app.store.schema import (
    label_resolutions,
    labels,
    training_images,
    uncertain_images,
)

__all__ = ["LabelTables"]


class LabelTables(StoreBase):
    """Labels on stored images, training images, and the label each image settles on."""

    def add_label(
        self, image_id: str, label: str, labeller: str, *, verified: bool | None = None
    ) -> dict[str, Any] | None:
        """Store a person's label for a stored image; None when the image is unknown.

        `verified`: True when the hub knows the labeller from their token, False when the
        request body named them (the single shared token), None when nobody said.
        """
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
            "verified": verified,
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
                    "image_id": msg_id,
                    "label": str(by_id[msg_id]["label"]),
                    "labeller": by_id[msg_id]["labeller"],
                    "created": now,
                    "model_version": None,
                    "previous_prediction": None,
                }
                for _, msg_id in new
            ]
            if label_rows:
                conn.execute(sa.insert(labels), label_rows)
        return len(new)

    def training_image(self, msg_id: str) -> Any | None:
        rows = self._rows(sa.select(training_images).where(training_images.c.msg_id == msg_id))
        return rows[0] if rows else None

    def latest_labels(self) -> list[tuple[str, str, str]]:
        """(image id, settled label, base64 PNG) of every labelled image, by its latest label, oldest first.

        The label is settled by `metro_app.training.fieldset.settle_labels` (each labeller's latest label,
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
            for table in (training_images, uncertain_images):  # an uncertain image wins over a training image
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
            for table in (training_images, uncertain_images):
                q = sa.select(table.c.msg_id, table.c.image).where(table.c.msg_id.in_(part))
                found |= {r.msg_id: r.image for r in self._rows(q)}
        return [(i, label, found[i]) for i, label in labelled if i in found]

    def label_votes(self) -> list[dict[str, Any]]:
        """Every label row (id, image_id, label, labeller, created), oldest first."""
        c = labels.c
        q = sa.select(c.id, c.image_id, c.label, c.labeller, c.created).order_by(c.id)
        return [r._asdict() for r in self._rows(q)]

    def add_resolution(self, image_id: str, label: str, resolver: str) -> dict[str, Any] | None:
        """Settle an image's label whatever its labellers said; None when the image is unknown."""
        if self.image(image_id) is None and self.training_image(image_id) is None:
            return None
        created = time.time()
        row: dict[str, Any] = {"image_id": image_id, "label": label, "resolver": resolver, "created": created}
        with self.engine.begin() as conn:
            row["id"] = conn.execute(
                sa.insert(label_resolutions).returning(label_resolutions.c.id), row
            ).scalar_one()
        return {**row, "created": iso(created)}

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
            q = sa.select(uncertain_images.c.msg_id, uncertain_images.c.camera).where(
                uncertain_images.c.msg_id.in_(list(ids[k : k + 500]))
            )
            out.update((r.msg_id, r.camera) for r in self._rows(q))
        return out

    def labels_since(self, since: float) -> dict[str, int]:
        """Camera -> labels stored after `since` (epoch seconds) on that camera's images."""
        q = (
            sa.select(uncertain_images.c.camera, sa.func.count(labels.c.id).label("n"))
            .join(uncertain_images, uncertain_images.c.msg_id == labels.c.image_id)
            .where(labels.c.created > since)
            .group_by(uncertain_images.c.camera)
        )
        return {r.camera: int(r.n) for r in self._rows(q)}

    def label_marks(self) -> tuple[int, int]:
        """(highest label id, highest resolution id): label quality changes only when these do."""
        with self.engine.connect() as conn:
            a = conn.execute(sa.select(sa.func.coalesce(sa.func.max(labels.c.id), 0))).scalar_one()
            b = conn.execute(sa.select(sa.func.coalesce(sa.func.max(label_resolutions.c.id), 0))).scalar_one()
        return int(a), int(b)
