"""The ``--retention`` spec: how long each kind of row is kept at full resolution.

``metrics=14d,images=7d`` (the default) keeps metrics windows 14 days, then as hourly roll-ups per
camera, and uncertain images that nobody labelled 7 days. A duration is a number and a unit
(``s``, ``m``, ``h``, ``d``); ``off`` for one kind keeps it forever, ``off`` alone disables
retention. A kind left out keeps its default.

>>> RetentionPolicy.parse("metrics=30d")
RetentionPolicy(metrics=2592000.0, images=604800.0)
>>> RetentionPolicy.parse("images=off,metrics=12h")
RetentionPolicy(metrics=43200.0, images=None)
>>> RetentionPolicy.parse("off").enabled
False
>>> RetentionPolicy.parse("labels=3d")
Traceback (most recent call last):
...
edgemnist.errors.ConfigError: --retention 'labels=3d': unknown kind 'labels'; the kinds are metrics and images (labels, models, rollouts and audit rows are never pruned)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgemnist.errors import ConfigError

__all__ = ["DEFAULT_RETENTION", "RetentionPolicy", "parse_duration"]

DEFAULT_RETENTION = "metrics=14d,images=7d"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_duration(text: str, spec: str) -> float | None:
    """Seconds of ``14d``, ``12h``, ``30m``, ``90s``; None for ``off``; ConfigError naming `spec` otherwise."""
    text = text.strip().lower()
    if text == "off":
        return None
    found = _DURATION.match(text)
    if not found or float(found.group(1)) <= 0:
        raise ConfigError(
            f"--retention {spec!r}: {text!r} is not a duration; write a positive number and a unit "
            "(s, m, h, d), e.g. 14d, or off"
        )
    return float(found.group(1)) * _UNITS[found.group(2)]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Seconds each kind is kept at full resolution after the hub stored it; None keeps it forever."""

    metrics: float | None = 14 * 86400.0  # then as hourly roll-ups per camera
    images: float | None = 7 * 86400.0  # uncertain images without a label; labelled ones stay

    @property
    def enabled(self) -> bool:
        return self.metrics is not None or self.images is not None

    @classmethod
    def parse(cls, spec: str) -> RetentionPolicy:
        """The policy a ``--retention`` value describes (see the module's docstring)."""
        text = spec.strip()
        if text.lower() == "off":
            return cls(None, None)
        values: dict[str, float | None] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            kind, eq, duration = part.partition("=")
            kind = kind.strip().lower()
            if not eq:
                raise ConfigError(f"--retention {spec!r}: {part!r} is not KIND=DURATION, e.g. metrics=14d")
            if kind not in ("metrics", "images"):
                raise ConfigError(
                    f"--retention {spec!r}: unknown kind {kind!r}; the kinds are metrics and images "
                    "(labels, models, rollouts and audit rows are never pruned)"
                )
            values[kind] = parse_duration(duration, spec)
        if not values:
            raise ConfigError(f"--retention {spec!r}: empty; write e.g. {DEFAULT_RETENTION}, or off")
        return cls(**values)  # type: ignore[arg-type]

    def describe(self) -> str:
        """The policy as a person reads it in the log."""
        if not self.enabled:
            return "retention off: nothing is pruned"

        def days(s: float | None) -> str:
            return "forever" if s is None else f"{s / 86400:g} days"

        return (
            f"retention: metrics windows {days(self.metrics)} (then hourly roll-ups), "
            f"unlabelled uncertain images {days(self.images)}; labels, models, rollouts and audit are kept"
        )
