"""The store's tables (SQLAlchemy Core); created on start, portable between SQLite and PostgreSQL."""

from __future__ import annotations

import re

import sqlalchemy as sa

__all__ = [
    "MODEL_STATUSES",
    "metadata",
    "metrics",
    "metric_cameras",
    "uncertain_images",
    "labels",
    "training_images",
    "model_registry",
    "model_events",
    "dead_letters",
    "ROLLOUT_STATES",
    "rollouts",
    "leases",
    "alerts",
    "label_resolutions",
    "audit",
    "metrics_hourly",
    "camera_health",
    "add_missing_columns",
    "widen_checks",
]

metadata = sa.MetaData()

_ID = sa.Integer().with_variant(sa.BigInteger(), "postgresql")

metrics = sa.Table(
    "metrics_windows",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(300), nullable=False, unique=True),
    sa.Column("camera", sa.String(300), nullable=False),
    sa.Column("timestamp", sa.String(64), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("bucket", sa.BigInteger, nullable=False, index=True),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("received", sa.Float, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64)),  # sha256 of the record as received: same id, other content?
)

metric_cameras = sa.Table(
    "metric_cameras",
    metadata,
    sa.Column("metric_id", _ID, sa.ForeignKey("metrics_windows.id"), primary_key=True),
    sa.Column("camera", sa.String(300), primary_key=True),
    sa.Column("certain", sa.Integer, nullable=False),
    sa.Column("uncertain", sa.Integer, nullable=False),
    sa.Index("ix_metric_cameras_camera", "camera", "metric_id"),
)

# each camera's health, kept by the write that stores its windows and images (never recomputed per
# request): all-time counts, its newest windows' figures (`recent`, JSON) and the columns views sort on
camera_health = sa.Table(
    "camera_health",
    metadata,
    sa.Column("camera", sa.String(300), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False, index=True),  # id of its newest metrics row (0: none yet)
    sa.Column("windows", sa.BigInteger, nullable=False),
    sa.Column("images", sa.BigInteger, nullable=False),
    sa.Column("uncertain", sa.BigInteger, nullable=False),
    sa.Column("stored", sa.BigInteger, nullable=False),  # uncertain images stored
    sa.Column("known", sa.BigInteger, nullable=False),  # of those, with a true_class
    sa.Column("right", sa.BigInteger, nullable=False),  # of those, predicted right
    sa.Column("recent", sa.Text, nullable=False),  # JSON: figures of its newest windows, oldest first
    sa.Column("last_seen", sa.String(64)),
    sa.Column("received", sa.Float),  # hub clock: when its newest window was stored
    sa.Column("expires", sa.Float),  # active until then (three of its windows after `received`, >= 30 s)
    sa.Column("uncertain_share", sa.Float),
    sa.Column("accuracy", sa.Float),
    sa.Column("accuracy_samples", sa.BigInteger, nullable=False),
    sa.Column("images_per_second", sa.Float),
    sa.Column("prep_p99", sa.Float),
    sa.Column("predict_p99", sa.Float),
    sa.Column("p99", sa.Float),  # the higher of the two
    sa.Column("outbox_pending", sa.BigInteger),
    sa.Column("outbox_dropped", sa.BigInteger),
    sa.Column("model_version", sa.String(300)),
    sa.Column("held_back", sa.BigInteger, nullable=False),
)

uncertain_images = sa.Table(
    "uncertain_images",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(300), nullable=False, unique=True),
    sa.Column("camera", sa.String(300), nullable=False),
    sa.Column("timestamp", sa.String(64), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("image", sa.Text, nullable=False),
    sa.Column("prepared", sa.LargeBinary, nullable=False),
    sa.Column("prep_time", sa.Float, nullable=False),
    sa.Column("predictions", sa.Text, nullable=False),
    sa.Column("result_class", sa.Integer, nullable=False),
    sa.Column("result_probability", sa.Float, nullable=False),
    sa.Column("predict_time", sa.Float, nullable=False),
    sa.Column("schema", sa.Integer),
    sa.Column("model_version", sa.String(300)),
    sa.Column("true_class", sa.Integer),
    sa.Column("shadow_version", sa.String(300), index=True),  # a disagreement with this shadow model
    sa.Column("shadow_predicted", sa.Integer),
    sa.Column("shadow_scores", sa.Text),  # JSON: the shadow model's ten scores
    sa.Column("received", sa.Float, nullable=False),
    sa.Column("content_hash", sa.String(64)),
    sa.Index("ix_uncertain_images_camera", "camera", "id"),
)

labels = sa.Table(
    "labels",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("image_id", sa.String(300), nullable=False, index=True),
    sa.Column("label", sa.String(32), nullable=False),
    sa.Column("labeller", sa.String(300), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(300)),
    sa.Column("previous_prediction", sa.Integer),
    # True: the labeller is the person a tokens-file token names; False: whatever the body said
    # (the single shared token); NULL: from before the hub knew people, or a training event
    sa.Column("verified", sa.Boolean),
)

training_images = sa.Table(
    "training_images",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(300), nullable=False, unique=True),
    sa.Column("source", sa.String(300), nullable=False),
    sa.Column("image", sa.Text, nullable=False),
    sa.Column("received", sa.Float, nullable=False),
)

# serving: the hub's first model (its --model), which every camera runs without a publication;
# superseded: was serving or published to every camera until a newer model was published to every camera
MODEL_STATUSES = (
    "candidate", "refused", "shadow", "canary", "serving", "published", "superseded", "rolled_back",
)  # fmt: skip
# the statuses of the model every camera runs (one model at a time holds one of them)
FLEET_STATUSES = ("serving", "published")

model_registry = sa.Table(
    "model_registry",
    metadata,
    sa.Column("version", sa.String(300), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("parent", sa.String(300)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("card", sa.Text, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in MODEL_STATUSES) + ")", name="ck_model_registry_status"
    ),
)

model_events = sa.Table(
    "model_events",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("version", sa.String(300), sa.ForeignKey("model_registry.version"), nullable=False, index=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(300), nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("received", sa.Float, nullable=False),
    sa.UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_origin"),
)

# camera alerts (drift, departs from fleet, Camera Error labels); `key` makes raising one idempotent
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(700), nullable=False, unique=True),
    sa.Column("camera", sa.String(300), nullable=False, index=True),
    sa.Column("signal", sa.String(64), nullable=False),
    sa.Column("started", sa.String(64), nullable=False),
    sa.Column("raised", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | closed
    sa.Column("closed", sa.Float),
    sa.Column("close_reason", sa.Text),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("sent", sa.Float),  # when a hub claimed it for the alerts topic (once)
)

# a reviewer's decision that settles an image's label whatever the labellers said
label_resolutions = sa.Table(
    "label_resolutions",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("image_id", sa.String(300), nullable=False, index=True),
    sa.Column("label", sa.String(32), nullable=False),
    sa.Column("resolver", sa.String(300), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)


# metrics windows older than the retention period, rolled up per camera and hour (`store.retention`):
# sums of counts, so accuracy (correct / labelled) and uncertain share (uncertain / images) stay computable
metrics_hourly = sa.Table(
    "metrics_hourly",
    metadata,
    sa.Column("camera", sa.String(300), primary_key=True),
    sa.Column("hour", sa.BigInteger, primary_key=True),  # epoch seconds of the hour's start (UTC)
    sa.Column("windows", sa.Integer, nullable=False),
    sa.Column("images", sa.BigInteger, nullable=False),  # certain + uncertain
    sa.Column("uncertain", sa.BigInteger, nullable=False),
    sa.Column("labelled", sa.BigInteger, nullable=False),
    sa.Column("correct", sa.BigInteger, nullable=False),
    sa.Column("first_ts", sa.Float, nullable=False),  # the oldest window's time in the hour
    sa.Column("last_ts", sa.Float, nullable=False),
)


# every write on the hub (API route or CLI command): who, when, what, and how it ended; never pruned
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("time", sa.Float, nullable=False, index=True),
    sa.Column("person", sa.String(300), nullable=False),
    sa.Column("role", sa.String(32)),
    sa.Column("verified", sa.Boolean, nullable=False),  # False: the shared token's `default`, or a CLI user
    sa.Column("route", sa.String(300), nullable=False),  # "POST /labels", "metro-app tokens add"
    sa.Column("path", sa.Text, nullable=False),  # the request's path, or the command's target
    sa.Column("status", sa.Integer, nullable=False),  # the HTTP status (a command: 0 done, 1 failed)
    sa.Column("outcome", sa.String(32), nullable=False),  # done | refused | failed
    sa.Column("detail", sa.Text, nullable=False),  # JSON: what the write was about (image, label, version)
)


# a canary rollout: pending (registered) -> canary (on the canary cameras) -> promoted | rolled_back;
# failed when it could not start (unknown model, nothing to compare with)
ROLLOUT_STATES = ("pending", "shadow", "canary", "promoted", "rolled_back", "failed")

rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("version", sa.String(300), sa.ForeignKey("model_registry.version"), nullable=False, index=True),
    sa.Column("parent", sa.String(300), nullable=False),  # what the fleet ran; published back on a rollback
    sa.Column("targets", sa.Text, nullable=False),  # JSON list of canary camera names (as given)
    sa.Column("cameras", sa.Text),  # JSON list of the full camera names matched when the canary started
    sa.Column("windows", sa.Integer, nullable=False),
    sa.Column("max_accuracy_drop", sa.Float, nullable=False),
    sa.Column("max_uncertain_rise", sa.Float, nullable=False),
    sa.Column("timeout", sa.Float, nullable=False),
    sa.Column("min_images", sa.Integer, nullable=False),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("trigger", sa.String(300), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("started", sa.Float),  # the canary's publication was acknowledged
    sa.Column("finished", sa.Float),  # the promotion or rollback was acknowledged
    sa.Column("upto", sa.BigInteger),  # newest metrics row id before the canary: the baseline ends here
    sa.Column("baseline", sa.Text),  # JSON: camera -> figures of its windows before the canary
    sa.Column("figures", sa.Text),  # JSON: camera -> figures of its windows scored by the canary
    # JSON: the shadow stage's rule (labels, alpha), start and figures so far; NULL: no shadow stage
    sa.Column("shadow", sa.Text),
    sa.Column("reason", sa.Text, nullable=False),
    sa.CheckConstraint(
        "state IN (" + ", ".join(f"'{s}'" for s in ROLLOUT_STATES) + ")", name="ck_rollouts_state"
    ),
)

# a retrain asked for on the control topic: recorded before the command's offset is committed, so a
# hub stopped before or during the retrain leaves a row that the next hub picks up (or reports)
RETRAIN_REQUEST_STATES = ("pending", "running", "done", "failed")

retrain_requests = sa.Table(
    "retrain_requests",
    metadata,
    sa.Column("id", sa.String(300), primary_key=True),  # topic[partition]@offset of the command
    sa.Column("trigger", sa.String(300), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("holder", sa.String(300)),  # the hub process running it
    sa.Column("job", sa.String(100)),  # the retrain job that ran it
    sa.Column("created", sa.Float, nullable=False),
    sa.Column(
        "updated", sa.Float, nullable=False
    ),  # renewed while it runs: a stale running row was abandoned
    sa.Column("detail", sa.Text),
    sa.CheckConstraint(
        "state IN (" + ", ".join(f"'{s}'" for s in RETRAIN_REQUEST_STATES) + ")",
        name="ck_retrain_requests_state",
    ),
)

# a lease: the one hub (of several sharing the store) that runs a singleton job, until it expires
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(300), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
)


def add_missing_columns(engine: sa.engine.Engine) -> None:
    """Add nullable columns that newer versions define to tables an older hub created."""
    inspector = sa.inspect(engine)
    with engine.begin() as conn:
        for table in (metrics, uncertain_images, labels, rollouts):
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for col in table.columns:
                if col.name not in have and col.nullable:
                    kind = col.type.compile(dialect=engine.dialect)
                    conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {kind}'))


def widen_checks(engine: sa.engine.Engine) -> None:
    """Bring the state and status CHECK constraints of a store an older hub created up to date.

    A newer hub knows more states (a rollout's ``shadow`` stage, say); an old constraint would refuse
    them. Only the allowed values widen, no row changes: PostgreSQL drops and adds the constraint;
    SQLite rewrites the table's schema text in place, the documented way for a change that leaves
    the data on disk untouched (https://www.sqlite.org/lang_altertable.html, "writable_schema").
    """
    inspector = sa.inspect(engine)
    for table in (rollouts, model_registry):
        if not inspector.has_table(table.name):
            continue
        want = {
            c.name: str(c.sqltext)
            for c in table.constraints
            if isinstance(c, sa.CheckConstraint) and isinstance(c.name, str)
        }
        have = {c["name"]: c["sqltext"] for c in inspector.get_check_constraints(table.name)}
        stale = {n: (have[n], text) for n, text in want.items() if n in have and _narrower(have[n], text)}
        if not stale:
            continue
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                for name, (_, text) in stale.items():
                    conn.execute(sa.text(f"ALTER TABLE {table.name} DROP CONSTRAINT {name}"))
                    conn.execute(sa.text(f"ALTER TABLE {table.name} ADD CONSTRAINT {name} CHECK ({text})"))
            elif engine.dialect.name == "sqlite":
                sql = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
                ).scalar_one()
                for old, new in stale.values():
                    sql = sql.replace(old, new)
                version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
                conn.exec_driver_sql("PRAGMA writable_schema = ON")
                conn.exec_driver_sql(
                    "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, table.name)
                )
                conn.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
                conn.exec_driver_sql("PRAGMA writable_schema = OFF")


def _narrower(have: str, want: str) -> bool:
    """Whether the constraint text `have` misses a value that `want` allows (however the database spells it)."""
    return any(f"'{value}'" not in have for value in re.findall(r"'([^']*)'", want))
