"""A store an older hub created takes the states a newer hub writes (a rollout's shadow stage)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from metro_app.store import Store

OLD_ROLLOUTS = """CREATE TABLE rollouts (id INTEGER PRIMARY KEY, version VARCHAR(300) NOT NULL,
 parent VARCHAR(300) NOT NULL, targets TEXT NOT NULL, cameras TEXT, windows INTEGER NOT NULL,
 max_accuracy_drop FLOAT NOT NULL, max_uncertain_rise FLOAT NOT NULL, timeout FLOAT NOT NULL,
 min_images INTEGER NOT NULL, state VARCHAR(32) NOT NULL, trigger VARCHAR(300) NOT NULL, created FLOAT NOT NULL,
 updated FLOAT NOT NULL, started FLOAT, finished FLOAT, upto BIGINT, baseline TEXT, figures TEXT,
 reason TEXT NOT NULL,
 CONSTRAINT ck_rollouts_state CHECK (state IN ('pending', 'canary', 'promoted', 'rolled_back', 'failed')))"""


def test_an_old_sqlite_store_takes_the_shadow_state_and_keeps_its_rows_and_its_check(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(OLD_ROLLOUTS)
        conn.exec_driver_sql(
            "INSERT INTO rollouts VALUES (1, 'm-2', 'm-1', '[\"A\"]', NULL, 3, 5, 10, 60, 50, 'canary', 't', "
            "1, 1, NULL, NULL, NULL, NULL, NULL, 'r')"
        )
    engine.dispose()
    store = Store(url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE rollouts SET state = 'shadow', shadow = '{}'")
        assert conn.exec_driver_sql("SELECT id, version, state, shadow FROM rollouts").all() == [
            (1, "m-2", "shadow", "{}")
        ]
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE rollouts SET state = 'bogus'")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    store.close()
    Store(url).close()  # a second start finds nothing to widen
