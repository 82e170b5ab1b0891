"""Pure figures a dashboard shows, computed from view tuples (no widgets, no network).

Metrics tuples are read as `edgemnist.wire.messages.MetricsMessage` (the monitor converts each once);
the per-message figures come from `metro_app.views.figures`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from edgemnist.uncertainty import CONFIDENCE, is_uncertain
from edgemnist.wire.messages import MetricsMessage, parse_timestamp
from metro_app.views.figures import camera_totals

__all__ = [
    "active_cameras",
    "window_shares",
    "latest_labels",
    "camera_totals",
    "accuracy_series",
    "unseen_labels",
    "recent_accuracy",
    "split_confident",
]

RECENT = 5  # windows a camera's live accuracy covers, as the hub's CameraHealth (store.camerarows.RECENT)


def _when(ts: str | None) -> datetime | None:
    try:
        return parse_timestamp(ts) if ts else None
    except Exception:  # noqa: BLE001 - a bad timestamp only hides that window from discovery
        return None


def active_cameras(
    metrics: Iterable[MetricsMessage], seconds: float = 60.0, now: datetime | None = None
) -> list[str]:
    """Cameras that sent a metrics window in the last `seconds`, or every camera seen when none did.

    The fallback keeps a dashboard useful against a stack that stopped a while ago.

    >>> from metro_app.samples import make_metrics
    >>> june = datetime(2020, 6, 1, 12, tzinfo=UTC).timestamp()
    >>> m = [make_metrics("A", 1, when=june), make_metrics("B", 1, when=june + 300)]
    >>> active_cameras(m, 60, now=datetime(2020, 6, 1, 12, 5, 30, tzinfo=UTC))
    ['B']
    >>> active_cameras(m, 60, now=datetime(2021, 1, 1, tzinfo=UTC))
    ['A', 'B']
    """
    now = now or datetime.now(UTC)
    seen: dict[str, datetime | None] = {}
    for m in metrics:
        when = _when(m.timestamp)
        for cam in m.camera_metrics:
            prev = seen.get(cam)
            seen[cam] = when if prev is None or (when is not None and when > prev) else prev
    recent = [c for c, w in seen.items() if w is not None and (now - w).total_seconds() <= seconds]
    return sorted(recent or seen)


def window_shares(window: MetricsMessage, camera: str) -> dict[str, Any]:
    """Per digit, the percent of the window's images predicted certain / uncertain.

    >>> from metro_app.samples import make_metrics
    >>> w = make_metrics("A", 1)
    >>> w = MetricsMessage.of(w.to_dict() | {"camera_metrics": {"A": {"certain": [3] + [0] * 10,
    ...                                                              "uncertain": [1] + [0] * 10}}})
    >>> s = window_shares(w, "A")
    >>> s["total"], s["certain"][:2], s["uncertain"][:2]
    (4, [75.0, 0.0], [25.0, 0.0])
    """
    c = window.camera_metrics[camera]
    certain, uncertain = list(c.certain)[:10], list(c.uncertain)[:10]
    total = sum(certain) + sum(uncertain)
    pct = [100.0 / total if total else 0.0] * 10
    return {
        "total": total,
        "certain": [n * p for n, p in zip(certain, pct, strict=True)],
        "uncertain": [n * p for n, p in zip(uncertain, pct, strict=True)],
        "uncertain_count": sum(uncertain),
    }


def latest_labels(labels: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest label of each image (labels come ascending by id).

    >>> latest_labels([{"id": 1, "image_id": "a", "label": "3"}, {"id": 2, "image_id": "a", "label": "5"}])
    {'a': {'id': 2, 'image_id': 'a', 'label': '5'}}
    """
    out: dict[str, dict[str, Any]] = {}
    for lab in sorted(labels, key=lambda x: x["id"]):
        out[lab["image_id"]] = dict(lab)
    return out


def accuracy_series(metrics: Iterable[MetricsMessage], camera: str) -> list[dict[str, Any]]:
    """Per metrics window of one camera: when, live accuracy, how many labelled, which model, and
    while a candidate scores in shadow there, the share of images on which the two models agreed.

    Windows with neither labels (a source that knows none) nor a shadow model are left out;
    ``accuracy`` or ``agreement`` is None in a window that lacks it.

    >>> from metro_app.samples import make_metrics
    >>> m = [make_metrics("A", 1, images=10, correct=8), make_metrics("B", 1, images=10, correct=1),
    ...      make_metrics("A", 2, images=4, correct=4), make_metrics("A", 3)]
    >>> [(p["accuracy"], p["labelled"], p["model_version"]) for p in accuracy_series(m, "A")]
    [(0.8, 10, 'm-test'), (1.0, 4, 'm-test')]
    """
    out = []
    for m in metrics:
        shadow = m.shadow if m.shadow is not None and m.shadow.images else None
        if m.single_camera != camera or not (m.labelled or shadow):
            continue
        out.append(
            {
                "timestamp": m.window_end or m.timestamp,
                "start": m.window_start,
                "accuracy": (m.correct or 0) / m.labelled if m.labelled else None,
                "labelled": m.labelled or 0,
                "correct": m.correct or 0,
                "model_version": m.model_version,
                "agreement": shadow.agree / shadow.images if shadow else None,
                "shadow_version": shadow.version if shadow else None,
            }
        )
    return out


def unseen_labels(
    labels: Sequence[Mapping[str, Any]], models: Sequence[Mapping[str, Any]]
) -> tuple[int, str | None]:
    """(labels stored after the newest serving or published model was created, that model's version).

    Those are the labels the serving model has not learnt from yet; every label counts when no model
    is registered as serving or published.

    >>> labs = [{"created": "2026-01-01T00:00:00.000000Z"}, {"created": "2026-01-03T00:00:00.000000Z"}]
    >>> unseen_labels(labs, [{"version": "m2", "status": "published", "created": "2026-01-02T00:00:00Z"}])
    (1, 'm2')
    >>> unseen_labels(labs, [])
    (2, None)
    """
    published = [m for m in models if m.get("status") in ("serving", "published") and _when(m.get("created"))]
    if not published:
        return len(labels), None
    newest = max(published, key=lambda m: _when(m["created"]))  # type: ignore[arg-type,return-value]
    since = _when(newest["created"])
    assert since is not None
    return sum(1 for lab in labels if (w := _when(lab.get("created"))) is not None and w > since), newest[
        "version"
    ]


def recent_accuracy(series: Sequence[Mapping[str, Any]], windows: int = RECENT) -> dict[str, Any] | None:
    """Live accuracy over a camera's last `windows` labelled windows, as the hub's CameraHealth counts it.

    One figure per camera, with the span it covers (first window's start to last window's end), so
    the chart and the text say the same. None without a labelled window.

    >>> s = [{"accuracy": 1.0, "labelled": 10, "correct": 10, "start": "a", "timestamp": "b"},
    ...      {"accuracy": 0.5, "labelled": 30, "correct": 15, "start": "c", "timestamp": "d"}]
    >>> r = recent_accuracy(s, 5)
    >>> r["accuracy"], r["labelled"], r["windows"], r["start"], r["end"]
    (0.625, 40, 2, 'a', 'd')
    >>> recent_accuracy([]) is None
    True
    """
    last = [p for p in series if p.get("labelled")][-windows:]  # windows scored in shadow only have none
    known = sum(int(p["labelled"]) for p in last)
    if not last or not known:
        return None
    right = sum(int(p["correct"]) for p in last)
    return {
        "accuracy": right / known,
        "labelled": known,
        "windows": len(last),
        "start": last[0].get("start") or last[0]["timestamp"],
        "end": last[-1]["timestamp"],
    }


def split_confident(
    items: Iterable[Mapping[str, Any]], confidence: float = CONFIDENCE
) -> tuple[list[Any], int]:
    """(the uncertain images, how many confident ones were left out).

    A Test camera sends every image home, also those its model is sure of (scored above the
    confidence threshold): those are not uncertain and stay out of the gallery.

    >>> items = [{"camera": "TestCamera", "result_probability": 1.0},
    ...          {"camera": "TestCamera", "result_probability": 0.4}, {"camera": "Cam1", "result_probability": 0.6}]
    >>> kept, left_out = split_confident(items)
    >>> [(t["camera"], t["result_probability"]) for t in kept], left_out
    ([('TestCamera', 0.4), ('Cam1', 0.6)], 1)
    """
    kept, left_out = [], 0
    for t in items:
        if bool(is_uncertain(float(t["result_probability"]), confidence)):
            kept.append(t)
        else:
            left_out += 1
    return kept, left_out
