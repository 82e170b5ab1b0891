"""The hub's durable store: SQLAlchemy Core over SQLite (default) or PostgreSQL.

`Store` is one object per hub process; each table family lives in its own module:

- `events`: metrics windows, their per-camera rows, uncertain images, dead letters;
- `labels`: people's labels, training images from other systems, resolutions;
- `models`: the model registry (skops bytes, status, events), shown as `modelrows`;
- `alerts`: camera alerts; `audit`: who did which write; `rollouts`: rollouts (`RolloutBook`); `leases`: singleton jobs (`Lease`);
  `requests`: retrain requests from the control topic (`RetrainRequests`);
- `disagreements`: images where a shadow model disagreed, and who was right (`DisagreementBook`);
- `retention`: old metrics windows rolled up into hourly rows, old unlabelled images deleted (`RetentionBook`);
- `tallies`: the counts the hub's Prometheus gauges read (`Tallies`).

`schema` holds every table, `engine` the SQLite/PostgreSQL engines, `base` the shared write lock,
`rows` and `items` the conversions between wire messages and rows.
Every write is idempotent on the message id (INSERT .. ON CONFLICT DO NOTHING), so a message
Kafka delivers twice is stored once.
"""

from __future__ import annotations

from metro_app.store.alerts import AlertTables
from metro_app.store.audit import AuditTables
from metro_app.store.disagreements import DisagreementBook
from metro_app.store.events import (
    FLEET_BUCKET_SECONDS,
    DeadLetter,
    EventTables,
    WriteResult,
    image_row_to_dict,
)
from metro_app.store.labels import LabelTables
from metro_app.store.leases import Lease
from metro_app.store.models import ModelTables
from metro_app.store.requests import RetrainRequests
from metro_app.store.retention import RetentionBook
from metro_app.store.rollouts import RolloutBook
from metro_app.store.tallies import Tallies

__all__ = ["DeadLetter", "WriteResult", "Store", "FLEET_BUCKET_SECONDS", "image_row_to_dict"]


class Store(EventTables, LabelTables, ModelTables, AlertTables, AuditTables):
    """Metrics windows, uncertain and training images, labels, the model registry, alerts, dead letters, audit.

    One engine and one write lock (`base.StoreBase`) shared by the table families it combines.
    """

    def rollout_book(self) -> RolloutBook:
        """The rollouts table (and the windows a rollout's verdict is made of)."""
        return RolloutBook(self)

    def retrain_requests(self) -> RetrainRequests:
        """Retrain requests from the control topic, recorded before their offset is committed."""
        return RetrainRequests(self)

    def disagreement_book(self) -> DisagreementBook:
        """The images where a shadow model disagreed with the serving one, and their labels."""
        return DisagreementBook(self.engine)

    def retention(self) -> RetentionBook:
        """Pruning by age: windows into hourly roll-ups, unlabelled images deleted (never labels, models, audit)."""
        return RetentionBook(self.engine)

    def tallies(self) -> Tallies:
        """Cameras active and alerting, models, rollouts and retrain requests per state (for /metrics)."""
        return Tallies(self.engine)

    def lease(self, name: str, holder: str | None = None, *, ttl: float = 15.0) -> Lease:
        """A lease row: one hub of several sharing this store runs the singleton job `name`."""
        return Lease(self.engine, name, holder, ttl=ttl)
