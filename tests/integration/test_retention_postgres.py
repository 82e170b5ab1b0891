"""Retention on a real PostgreSQL: two hubs rolling up at once count every window exactly once, ingest
goes on meanwhile, labelled images stay, unlabelled old ones go."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from edgemnist.testing.fakes import FakeClock
from metro_app.retention import Pruner, RetentionPolicy
from metro_app.samples import make_image
from metro_app.store import Store
from metro_app.store.retention import HOUR
from metro_app.store.schema import metrics, uncertain_images
from metro_app.testing import WINDOW_T0, metrics_window

pytestmark = pytest.mark.integration

DAY = 86400.0


def age_everything(store: Store, days: float) -> None:
    with store.engine.begin() as conn:
        for table in (metrics, uncertain_images):
            conn.execute(sa.update(table).values(received=time.time() - days * DAY))


def test_two_hubs_roll_up_at_once_while_a_third_ingests(postgres):
    url = postgres.fresh_database(f"retention{time.time_ns()}")
    store = Store(url)
    cams = ["CamA", "CamB", "CamC"]
    old = [
        metrics_window(cam, 30 * k, images=40, uncertain=k % 5, correct=35)
        for cam in cams
        for k in range(400)
    ]
    for k in range(0, len(old), 300):
        store.write_batch(old[k : k + 300], [])
    store.write_batch([], [make_image("CamA", i) for i in range(300)])
    for i in range(0, 300, 10):
        store.add_label(f"CamA/r1/i{i}", "3", "ana")
    store.add_resolution("CamA/r1/i5", "5", "rev")
    age_everything(store, days=20)

    hubs = [Store(url) for _ in range(2)]
    writer = Store(url)
    stop = threading.Event()
    written: list[int] = []
    rolled: list[int] = []

    def ingest() -> None:  # a hub loop's writes go on while the others prune
        n = 0
        while not stop.is_set():
            writer.write_batch([metrics_window("CamNew", 10_000 + n, images=10, uncertain=1)], [])
            n += 1
        written.append(n)

    def roll(book_store: Store) -> None:
        book = book_store.retention()
        while done := book.roll_up(before=time.time() - 14 * DAY, limit=100).windows:
            rolled.append(done)

    threads = [threading.Thread(target=roll, args=(s,)) for s in hubs] + [threading.Thread(target=ingest)]
    for t in threads:
        t.start()
    for t in threads[:2]:
        t.join(300)
    stop.set()
    threads[2].join(60)

    assert store.counts()["metrics"] == written[0] > 0  # only the new windows stay, every one of them
    want: dict[tuple[str, int], list[int]] = {}
    for m in old:
        cam = next(iter(m.camera_metrics))
        hour = int((WINDOW_T0 + int(m.id.rsplit("m", 1)[1])) // HOUR) * HOUR
        s = want.setdefault((cam, hour), [0, 0, 0, 0, 0])
        for i, v in enumerate((1, m.total, m.uncertain, m.labelled, m.correct)):
            s[i] += v
    got = {
        (r.camera, r.hour): [r.windows, r.images, r.uncertain, r.labelled, r.correct]
        for r in store.retention().hourly()
    }
    assert got == want  # no window counted twice, none lost
    assert sum(rolled) == len(old)  # the two hubs' DELETE .. RETURNING never both had a window

    pruner = Pruner(store, RetentionPolicy(), batch=64, pause=0, clock=FakeClock(time.time()))
    assert pruner.sweep()
    assert pruner.stats.images_pruned == 300 - 30 - 1
    left = {i for i in range(300) if store.image(f"CamA/r1/i{i}") is not None}
    assert left == {*range(0, 300, 10), 5}
    assert store.counts()["labels"] == 30
    for s in (store, writer, *hubs):
        s.close()
