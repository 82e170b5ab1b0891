"""Retention: how long the hub keeps metrics windows and unlabelled images, and the loop that prunes them.

`policy` parses ``--retention`` (``metrics=14d,images=7d`` by default, ``off``); `pruner` runs the
store's batches (`metro_app.store.retention`) in a thread of its own and reports on /health.
"""

from __future__ import annotations

from metro_app.retention.policy import DEFAULT_RETENTION, RetentionPolicy
from metro_app.retention.pruner import Pruner

__all__ = ["DEFAULT_RETENTION", "RetentionPolicy", "Pruner"]
