"""Disagreement images: frames where a shadow model's top class differed from the serving model's.

The edges send them home as image messages with ``shadow_*`` keys; they are stored with the
other images (`schema.uncertain_images`), labelled with the same ``POST /labels``, and
counted here into McNemar's discordant pairs (`metro_app.rollout.paired.Pairs`): a labelled
disagreement where exactly one model is right. An image's truth is its latest digit label
(a label that is no digit does not count), else the ``true_class`` its source knew.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from edgemnist.wire.envelope import targets_match
from metro_app.store.schema import labels, uncertain_images

__all__ = ["DisagreementBook", "PairCounts"]

_DIGITS = {str(d): d for d in range(10)}


class PairCounts(dict[str, int]):
    """``{"disagreements", "labelled", "candidate_right", "serving_right", "neither_right"}``."""


class DisagreementBook:
    """The disagreement images of one shadow model on some cameras, and their labels."""

    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine

    def _query(self, version: str) -> sa.Select[Any]:
        c = uncertain_images.c
        return sa.select(c.id, c.msg_id, c.camera, c.result_class, c.shadow_predicted, c.true_class).where(
            c.shadow_version == version, c.shadow_predicted.is_not(None)
        )

    def _rows(self, q: sa.Select[Any]) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(q))

    def listing(
        self, version: str, targets: Sequence[str], after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest first: ``{"seq", "image_id", "camera", "predicted", "shadow_predicted", "label"}``.

        ``seq`` is the image's row number; ``after`` returns only images stored after that one,
        so a client polling with the highest ``seq`` it saw gets what is new.
        """
        c = uncertain_images.c
        q = self._query(version).where(c.id > after).order_by(c.id.desc())
        rows = [r for r in self._rows(q) if targets_match(r.camera, targets)][:limit]
        truth = self._labels([r.msg_id for r in rows])
        return [
            {
                "seq": r.id,
                "image_id": r.msg_id,
                "camera": r.camera,
                "predicted": r.result_class,
                "shadow_predicted": r.shadow_predicted,
                "label": truth.get(r.msg_id, r.true_class),
            }
            for r in rows
        ]

    def pairs(self, version: str, targets: Sequence[str]) -> PairCounts:
        """The disagreements of `version` on `targets`, how many are labelled and who was right."""
        rows = [r for r in self._rows(self._query(version)) if targets_match(r.camera, targets)]
        truth = self._labels([r.msg_id for r in rows])
        out = PairCounts(
            disagreements=len(rows), labelled=0, candidate_right=0, serving_right=0, neither_right=0
        )
        for r in rows:
            label = truth.get(r.msg_id, r.true_class)
            if label is None:
                continue
            out["labelled"] += 1
            if r.shadow_predicted == label:
                out["candidate_right"] += 1
            elif r.result_class == label:
                out["serving_right"] += 1
            else:
                out["neither_right"] += 1
        return out

    def _labels(self, ids: Sequence[str]) -> dict[str, int]:
        """The latest digit label of each image that has one."""
        out: dict[str, int] = {}
        for k in range(0, len(ids), 500):
            part = list(ids[k : k + 500])
            q = sa.select(labels.c.image_id, labels.c.label).where(labels.c.image_id.in_(part))
            for r in self._rows(q.order_by(labels.c.id)):
                digit = _DIGITS.get(str(r.label).strip())
                if digit is not None:
                    out[r.image_id] = digit
                else:
                    out.pop(r.image_id, None)  # the latest word is "not a digit": no truth
        return out
