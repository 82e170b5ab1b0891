"""A camera's health and a fleet time bucket, from typed metrics messages (pure, no store).

The per-message figures (counts, p99, live accuracy) come from `metro_app.views.figures`; this module
only combines them into the CameraHealth and FleetMetrics tuples the hub serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgemnist.wire.messages import LABEL_SLOTS, MetricsMessage, utc_timestamp
from metro_app.store.rows import FLEET_BUCKET_SECONDS
from metro_app.views.figures import camera_counts, live_accuracy, worst_p99

__all__ = ["DEPARTURE", "camera_health", "fleet_bucket", "fleet_share"]

# a camera "departs" when its uncertain share differs from the fleet's median share by more than this
DEPARTURE = 0.2


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def fleet_share(recent: Mapping[str, Sequence[MetricsMessage]]) -> float | None:
    """The median of the cameras' uncertain shares: one odd camera cannot drag it."""
    shares = sorted(s for cam, w in recent.items() if (s := _ratio(*camera_counts(w, cam))) is not None)
    if not shares:
        return None
    mid = len(shares) // 2
    return shares[mid] if len(shares) % 2 else (shares[mid - 1] + shares[mid]) / 2


def camera_health(
    summary: Any,
    recent: Mapping[str, Sequence[MetricsMessage]],
    image_stats: tuple[int, int, int],
    fleet: float | None | object = ...,
    alerts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A camera's health from its store summary, every camera's recent windows and its image stats.

    Rates, shares, p99s and `accuracy` cover the camera's recent windows; `accuracy` is
    live accuracy over every image the edge scored whose label its source knows (the
    metrics' `labelled`/`correct`). `uncertain_accuracy` covers only the uncertain
    images that reached the hub with a `true_class`: far lower by construction.
    `fleet` is `fleet_share(recent)`: pass it when computing every camera, so it is computed once.
    `alerts` are the camera's open alerts (drift, fleet, Camera Error labels), newest first.
    `held_back` sums the uncertain images the edge's upload cap kept home over the recent windows.
    """
    name = summary.camera
    mine = recent.get(name, [])
    unc, tot = camera_counts(mine, name)
    share = _ratio(unc, tot)
    fleet = fleet_share(recent) if fleet is ... else fleet
    last = mine[-1] if mine else None
    duration = sum(w.config.metrics_duration for w in mine)
    outbox = last.outbox if last is not None else None
    stored, known, right = image_stats
    live_right, live_known = live_accuracy(mine, name)
    return {
        "name": name,
        "last_seen": last.timestamp if last is not None else None,
        "windows": int(summary.windows),
        "images": int(summary.images or 0),
        "uncertain": int(summary.uncertain or 0),
        "uncertain_images_stored": stored,
        "images_per_second": _ratio(tot, duration),
        "uncertain_share": share,
        "fleet_uncertain_share": fleet,
        "departs_from_fleet": isinstance(fleet, float)
        and share is not None
        and abs(share - fleet) > DEPARTURE,
        "accuracy": _ratio(live_right, live_known),
        "accuracy_samples": live_known,
        "uncertain_accuracy": _ratio(right, known),
        "uncertain_accuracy_samples": known,
        "prep_p99": worst_p99(mine, "prep"),
        "predict_p99": worst_p99(mine, "predict"),
        "outbox_pending": outbox.pending if outbox is not None else None,
        "outbox_dropped": outbox.dropped if outbox is not None else None,
        "model_version": last.model_version if last is not None else None,
        "held_back": sum(w.held_back or 0 for w in mine),
        "alerts": [dict(a) for a in alerts],
    }


def fleet_bucket(bucket: int, windows: Sequence[MetricsMessage | Mapping[str, Any]]) -> dict[str, Any]:
    """Every camera's counts summed over the metrics messages stamped within one bucket."""
    cams: dict[str, dict[str, Any]] = {}
    for w in map(MetricsMessage.of, windows):
        for cam, c in w.camera_metrics.items():
            acc = cams.setdefault(
                cam, {"certain": [0] * LABEL_SLOTS, "uncertain": [0] * LABEL_SLOTS, "windows": 0}
            )
            acc["certain"] = [a + b for a, b in zip(acc["certain"], c.certain, strict=True)]
            acc["uncertain"] = [a + b for a, b in zip(acc["uncertain"], c.uncertain, strict=True)]
            acc["windows"] += 1
    for acc in cams.values():
        acc["images"] = sum(acc["certain"]) + sum(acc["uncertain"])
    total = sum(a["images"] for a in cams.values())
    unc = sum(sum(a["uncertain"]) for a in cams.values())
    return {
        "bucket_start": utc_timestamp(float(bucket)),
        "bucket_seconds": FLEET_BUCKET_SECONDS,
        "windows": len(windows),
        "images": total,
        "uncertain_share": _ratio(unc, total),
        "cameras": cams,
    }
