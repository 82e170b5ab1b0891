"""The fleet's cameras as the API serves them: paged, sorted worst first, filtered, summarised.

Every figure comes from the store's camera health rows (`metro_app.store.cameras`), which the
hub keeps as windows arrive; a request reads one page of rows, the fleet's uncertain shares
(for the median a camera departs from) and the open alerts of the cameras on the page.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from metro_app.store import Store
from metro_app.store.cameras import SORTS
from metro_app.views.health import DEPARTURE

__all__ = ["SORTS", "MAX_LIMIT", "health_item", "hour_item", "median", "Fleet"]

MAX_LIMIT = 500


def median(values: Sequence[float]) -> float | None:
    """The median of sorted values; None without any.

    >>> median([0.1, 0.2, 0.9]), median([0.1, 0.3]), median([])
    (0.2, 0.2, None)
    """
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def health_item(
    row: Mapping[str, Any], fleet: float | None, alerts: Sequence[Mapping[str, Any]], now: float
) -> dict[str, Any]:
    """A camera's health (the keys `views.health.camera_health` gives) from its health row.

    `p99` (the higher of the prep and predict p99s) and `active` (a window arrived within three
    of its windows) are added.
    """
    share, stored, known = row["uncertain_share"], row["stored"], row["known"]
    return {
        "name": row["camera"],
        "last_seen": row["last_seen"],
        "windows": int(row["windows"]),
        "images": int(row["images"]),
        "uncertain": int(row["uncertain"]),
        "uncertain_images_stored": int(stored),
        "images_per_second": row["images_per_second"],
        "uncertain_share": share,
        "fleet_uncertain_share": fleet,
        "departs_from_fleet": fleet is not None and share is not None and abs(share - fleet) > DEPARTURE,
        "accuracy": row["accuracy"],
        "accuracy_samples": int(row["accuracy_samples"]),
        "uncertain_accuracy": row["right"] / known if known else None,
        "uncertain_accuracy_samples": int(known),
        "prep_p99": row["prep_p99"],
        "predict_p99": row["predict_p99"],
        "p99": row["p99"],
        "outbox_pending": row["outbox_pending"],
        "outbox_dropped": row["outbox_dropped"],
        "model_version": row["model_version"],
        "held_back": int(row["held_back"]),
        "active": row["expires"] is not None and row["expires"] >= now,
        "alerts": [dict(a) for a in alerts],
    }


def hour_item(row: Mapping[str, Any] | Any) -> dict[str, Any]:
    """One hourly roll-up row of a camera, with its uncertain share and accuracy.

    >>> hour_item({"hour": 7200, "windows": 360, "images": 1000, "uncertain": 50, "labelled": 200,
    ...            "correct": 180, "first_ts": 7201.0, "last_ts": 10790.0})["accuracy"]
    0.9
    """
    r = row if isinstance(row, Mapping) else row._mapping
    item = {
        k: r[k]
        for k in ("hour", "windows", "images", "uncertain", "labelled", "correct", "first_ts", "last_ts")
    }
    item["uncertain_share"] = r["uncertain"] / r["images"] if r["images"] else None
    item["accuracy"] = r["correct"] / r["labelled"] if r["labelled"] else None
    return item


class Fleet:
    """Pages of cameras, one camera, and the fleet's summary, over a store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def items(
        self, rows: Sequence[Mapping[str, Any]], fleet: float | None | object = ...
    ) -> list[dict[str, Any]]:
        """The health items of some rows, with the fleet's median share (`fleet`, else read) and open alerts."""
        if not rows:
            return []
        if not (fleet is None or isinstance(fleet, float)):
            fleet = self._store.uncertain_median()
        alerts = self._store.open_alerts_of([r["camera"] for r in rows])
        now = time.time()
        return [health_item(r, fleet, alerts.get(r["camera"], []), now) for r in rows]

    def page(
        self,
        *,
        sort: str = "name",
        limit: int = 50,
        offset: int = 0,
        q: str | None = None,
        alert: bool = False,
    ) -> dict[str, Any]:
        """One page: `cameras` (items), `total` (cameras matching), the paging asked and the next offset."""
        with self._store.reading():
            total, rows = self._store.camera_rows(sort=sort, limit=limit, offset=offset, q=q, alert=alert)
            items = self.items(rows)
        nxt = offset + len(rows)
        return {
            "cameras": items,
            "total": total,
            "sort": sort,
            "limit": limit,
            "offset": offset,
            "next_offset": nxt if nxt < total else None,
        }

    def camera(
        self, name: str, *, recent_windows: int = 0, recent_images: int = 0, hourly: int = 0
    ) -> dict[str, Any] | None:
        """One camera's health; None if it never sent a window.

        Asked for, also its newest `recent_windows` metrics windows (as sent), its newest
        `recent_images` uncertain images (as the UncertainPredictions view has them) and its newest
        `hourly` roll-ups (what retention kept of older windows), each oldest first: what a camera's
        detail page draws, read through the camera's own indexes, so it costs the same in a fleet
        of 10,000.
        """
        with self._store.reading():
            row = self._store.camera_row(name)
            if row is None:
                return None
            out = self.items([row])[0]
            if recent_windows:
                out["recent_windows"] = self._store.camera_windows(name, recent_windows)
            if recent_images:
                out["recent_images"] = [t for _, t in self._store.camera_images(name, recent_images)]
        if hourly:
            out["hourly"] = [hour_item(r) for r in self._store.retention().hourly(name, newest=hourly)]
        return out

    def summary(self, worst: int = 5) -> dict[str, Any]:
        """Counts (cameras, active, alerting, open alerts), the fleet's median share, the worst cameras."""
        with self._store.reading():
            counts = self._store.camera_counts()
            by_acc = self._store.camera_rows(sort="accuracy", limit=worst, count=False)[1]
            by_unc = self._store.camera_rows(sort="uncertain", limit=worst, count=False)[1]
            fleet = self._store.uncertain_median()
            return counts | {
                "fleet_uncertain_share": fleet,
                "worst_accuracy": self.items([r for r in by_acc if r["accuracy"] is not None], fleet),
                "worst_uncertain": self.items([r for r in by_unc if r["uncertain_share"] is not None], fleet),
            }
