"""Pure figures a dashboard shows, computed from view tuples (no widgets, no network)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from edgemnist.messages import parse_timestamp

__all__ = [
    "active_cameras",
    "window_shares",
    "derived_rates",
    "latest_labels",
    "camera_totals",
    "accuracy_series",
    "unseen_labels",
]


def _when(ts: str | None) -> datetime | None:
    try:
        return parse_timestamp(ts) if ts else None
    except Exception:  # noqa: BLE001 - a bad timestamp only hides that window from discovery
        return None


def active_cameras(
    metrics: Iterable[Mapping[str, Any]], seconds: float = 60.0, now: datetime | None = None
) -> list[str]:
    """Cameras that sent a metrics window in the last `seconds`, or every camera seen when none did.

    The fallback keeps a dashboard useful against a stack that stopped a while ago.

    >>> m = [{"timestamp": "2020-06-01T12:00:00Z", "camera_metrics": {"A": {}}},
    ...      {"timestamp": "2020-06-01T12:05:00Z", "camera_metrics": {"B": {}}}]
    >>> active_cameras(m, 60, now=datetime(2020, 6, 1, 12, 5, 30, tzinfo=UTC))
    ['B']
    >>> active_cameras(m, 60, now=datetime(2021, 1, 1, tzinfo=UTC))
    ['A', 'B']
    """
    now = now or datetime.now(UTC)
    seen: dict[str, datetime | None] = {}
    for m in metrics:
        when = _when(m.get("timestamp"))
        for cam in m.get("camera_metrics", {}):
            prev = seen.get(cam)
            seen[cam] = when if prev is None or (when is not None and when > prev) else prev
    recent = [c for c, w in seen.items() if w is not None and (now - w).total_seconds() <= seconds]
    return sorted(recent or seen)


def window_shares(window: Mapping[str, Any], camera: str) -> dict[str, Any]:
    """Per digit, the percent of the window's images predicted certain / uncertain.

    >>> w = {"camera_metrics": {"A": {"certain": [3, 0] + [0] * 9, "uncertain": [1] + [0] * 10}}}
    >>> s = window_shares(w, "A")
    >>> s["total"], s["certain"][:2], s["uncertain"][:2]
    (4, [75.0, 0.0], [25.0, 0.0])
    """
    c = window["camera_metrics"][camera]
    certain, uncertain = list(c["certain"])[:10], list(c["uncertain"])[:10]
    total = sum(certain) + sum(uncertain)
    pct = [100.0 / total if total else 0.0] * 10
    return {
        "total": total,
        "certain": [n * p for n, p in zip(certain, pct, strict=True)],
        "uncertain": [n * p for n, p in zip(uncertain, pct, strict=True)],
        "uncertain_count": sum(uncertain),
    }


def camera_totals(metrics: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Images scored per camera over some metrics messages."""
    out: dict[str, int] = {}
    for m in metrics:
        for cam, c in m.get("camera_metrics", {}).items():
            out[cam] = out.get(cam, 0) + sum(c["certain"]) + sum(c["uncertain"])
    return out


def derived_rates(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """REFERENCE.md's figures from one metrics message: rates and overheads, in seconds.

    >>> m = {"camera_metrics": {"A": {"certain": [8] + [0] * 10, "uncertain": [2] + [0] * 10}},
    ...      "config": {"delay": 0.05, "classify_parallel": 2, "metrics_duration": 10},
    ...      "latency_metrics": {"prep": {"mean": 0.01}, "predict": {"mean": 0.1}}}
    >>> r = derived_rates(m)
    >>> r["image_rate"], r["score_rate"], round(r["ingest_overhead"], 3), round(r["queueing_overhead"], 3)
    (1.0, 0.5, 0.94, 1.9)
    """
    total = sum(sum(c["certain"]) + sum(c["uncertain"]) for c in metrics["camera_metrics"].values())
    cfg, lat = metrics["config"], metrics["latency_metrics"]
    rate = total / float(cfg["metrics_duration"]) if cfg["metrics_duration"] else None
    score = rate / max(1, int(cfg["classify_parallel"])) if rate else None
    return {
        "images": float(total),
        "image_rate": rate,
        "score_rate": score,
        "ingest_overhead": 1 / rate - float(cfg["delay"]) - lat["prep"]["mean"] if rate else None,
        "queueing_overhead": 1 / score - lat["predict"]["mean"] if score else None,
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


def accuracy_series(metrics: Iterable[Mapping[str, Any]], camera: str) -> list[dict[str, Any]]:
    """Per metrics window of one camera: when, live accuracy, how many labelled, which model.

    Windows without labels (a source that knows none) are left out.

    >>> m = [{"timestamp": "t1", "camera_metrics": {"A": {}}, "labelled": 10, "correct": 8, "model_version": "m1"},
    ...      {"timestamp": "t2", "camera_metrics": {"B": {}}, "labelled": 10, "correct": 1},
    ...      {"timestamp": "t3", "camera_metrics": {"A": {}}, "labelled": 4, "correct": 4, "model_version": "m2"}]
    >>> [(p["timestamp"], p["accuracy"], p["model_version"]) for p in accuracy_series(m, "A")]
    [('t1', 0.8, 'm1'), ('t3', 1.0, 'm2')]
    """
    out = []
    for m in metrics:
        cams = m.get("camera_metrics", {})
        if camera not in cams or len(cams) != 1 or not m.get("labelled"):
            continue
        out.append(
            {
                "timestamp": m.get("window_end") or m.get("timestamp"),
                "accuracy": int(m.get("correct") or 0) / int(m["labelled"]),
                "labelled": int(m["labelled"]),
                "model_version": m.get("model_version"),
            }
        )
    return out


def unseen_labels(
    labels: Sequence[Mapping[str, Any]], models: Sequence[Mapping[str, Any]]
) -> tuple[int, str | None]:
    """(labels stored after the newest published model was created, that model's version).

    Those are the labels the serving model has not learnt from yet; every label counts when no model
    was ever published.

    >>> labs = [{"created": "2026-01-01T00:00:00.000000Z"}, {"created": "2026-01-03T00:00:00.000000Z"}]
    >>> unseen_labels(labs, [{"version": "m2", "status": "published", "created": "2026-01-02T00:00:00Z"}])
    (1, 'm2')
    >>> unseen_labels(labs, [])
    (2, None)
    """
    published = [m for m in models if m.get("status") == "published" and _when(m.get("created"))]
    if not published:
        return len(labels), None
    newest = max(published, key=lambda m: _when(m["created"]))  # type: ignore[arg-type,return-value]
    since = _when(newest["created"])
    assert since is not None
    return sum(1 for lab in labels if (w := _when(lab.get("created"))) is not None and w > since), newest[
        "version"
    ]
