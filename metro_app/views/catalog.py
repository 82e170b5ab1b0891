"""The hub's views: what dashboards poll, paged by sequence number straight from the store.

A view's sequence numbers are store row ids, so every hub instance sharing a
store serves the same numbers, and a restarted hub serves its views at once.
The reference's three views keep its tuple shapes exactly; `FleetMetrics` and
`CameraHealth` are snapshots (a fleet time bucket, a camera) that reappear
with a higher seq whenever a newer metrics message changes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from metro_app.store import Store
from metro_app.store.camerarows import RECENT
from metro_app.views.figures import typed_windows
from metro_app.views.fleet import Fleet
from metro_app.views.health import camera_health, fleet_bucket, fleet_share

__all__ = [
    "WINDOW_SIZE",
    "View",
    "ClassificationMetrics",
    "WindowUncertain",
    "UncertainPredictions",
    "FleetMetrics",
    "CameraHealth",
    "Views",
]

WINDOW_SIZE = 25
Page = list[tuple[int, Any]]


class View(Protocol):
    """A named, append-mostly sequence of tuples."""

    name: str

    def page(self, after: int, limit: int) -> Page: ...

    def last_seq(self) -> int: ...

    def size(self) -> int: ...


class _StoreView:
    name = ""

    def __init__(self, store: Store) -> None:
        self._store = store


class ClassificationMetrics(_StoreView):
    """Every metrics message, as sent."""

    name = "ClassificationMetrics"

    def page(self, after: int, limit: int) -> Page:
        return self._store.metrics_page(after, limit)

    def last_seq(self) -> int:
        return self._store.last_ids("metrics")["metrics"]

    def size(self) -> int:
        return self._store.counts("metrics")["metrics"]


class WindowUncertain(ClassificationMetrics):
    """For each metrics message, the list of the last 25 metrics messages up to it."""

    name = "WindowUncertain"

    def page(self, after: int, limit: int) -> Page:
        rows = self._store.metrics_page(after, limit)
        if not rows:
            return []
        bodies = [b for _, b in self._store.metrics_upto(rows[0][0] - 1, WINDOW_SIZE - 1)]
        start = len(bodies)
        bodies += [b for _, b in rows]
        return [
            (seq, bodies[max(0, start + k - WINDOW_SIZE + 1) : start + k + 1])
            for k, (seq, _) in enumerate(rows)
        ]


class UncertainPredictions(_StoreView):
    """Every uncertain-image message, with its id (derived for reference messages)."""

    name = "UncertainPredictions"

    def page(self, after: int, limit: int) -> Page:
        return self._store.images_page(after, limit)

    def last_seq(self) -> int:
        return self._store.last_ids("images")["images"]

    def size(self) -> int:
        return self._store.counts("images")["images"]


class FleetMetrics(ClassificationMetrics):
    """All cameras per fleet time bucket (10 s of message timestamps)."""

    name = "FleetMetrics"

    def page(self, after: int, limit: int) -> Page:
        heads = self._store.fleet_buckets(after, limit)
        if not heads:
            return []
        upto = max(seq for seq, _ in heads)
        grouped: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        for row_id, bucket, body in self._store.bucket_metrics([b for _, b in heads], upto):
            grouped.setdefault(bucket, []).append((row_id, body))
        return [
            (seq, fleet_bucket(bucket, [b for i, b in grouped.get(bucket, []) if i <= seq]))
            for seq, bucket in heads
        ]

    def size(self) -> int:
        return self._store.fleet_bucket_count()


class CameraHealth(ClassificationMetrics):
    """One tuple per camera, re-sequenced whenever the camera sends a new metrics window.

    Read from the camera health rows the store keeps as windows arrive (`metro_app.views.fleet`);
    `recompute` is the same figures from scratch, from the stored windows.
    """

    name = "CameraHealth"
    recent = RECENT

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.fleet = Fleet(store)

    def snapshot(self) -> Page:
        """Every camera's health, ascending by seq."""
        return self.page(0, 2**62)

    def page(self, after: int, limit: int) -> Page:
        with self._store.reading():
            rows = self._store.camera_rows_after(after, limit)
            return [(r["seq"], t) for r, t in zip(rows, self.fleet.items(rows), strict=True)]

    def size(self) -> int:
        return self._store.camera_rows(limit=0)[0]

    def recompute(self) -> Page:
        """Every camera's health computed from its stored windows and images, ascending by seq."""
        summaries = self._store.camera_summaries()
        stats = self._store.camera_image_stats()
        recent = typed_windows(self._store.recent_windows(self.recent))
        fleet = fleet_share(recent)
        alerts: dict[str, list[dict[str, Any]]] = {}
        for a in self._store.alerts("open"):
            alerts.setdefault(a["camera"], []).append(a)
        return [
            (s.seq, camera_health(s, recent, stats.get(s.camera, (0, 0, 0)), fleet, alerts.get(s.camera, [])))
            for s in summaries
        ]


class Views:
    """The hub's views by name."""

    kinds = (ClassificationMetrics, WindowUncertain, UncertainPredictions, FleetMetrics, CameraHealth)

    def __init__(self, store: Store) -> None:
        self._views: dict[str, View] = {k.name: k(store) for k in self.kinds}

    def __iter__(self) -> Iterator[View]:
        return iter(self._views.values())

    def get(self, name: str) -> View | None:
        return self._views.get(name)

    @property
    def camera_health(self) -> CameraHealth:
        view = self._views[CameraHealth.name]
        assert isinstance(view, CameraHealth)
        return view
