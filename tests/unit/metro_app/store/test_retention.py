"""Retention in the store: old windows folded into hourly rows with their sums, old unlabelled images
deleted, labelled ones kept, each call bounded to one batch."""

from __future__ import annotations

import time

import sqlalchemy as sa

from metro_app.samples import make_image
from metro_app.store.retention import HOUR
from metro_app.store.schema import metric_cameras, metrics, uncertain_images
from metro_app.testing import WINDOW_T0, metrics_window

DAY = 86400.0


def age(store, table, ids, days):
    """Make rows look stored `days` ago (the hub stamps `received` with its own clock)."""
    with store.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.id.in_(ids)).values(received=time.time() - days * DAY))


def ids_of(store, table):
    with store.engine.connect() as conn:
        return [r.id for r in conn.execute(sa.select(table.c.id).order_by(table.c.id))]


def test_old_windows_become_hourly_rows_whose_sums_keep_accuracy_and_uncertain_share(store):
    # CamA: 12 windows 10 minutes apart (two hours), labelled; CamB: 4 windows, unlabelled
    a = [metrics_window("CamA", 600 * k, images=50, uncertain=k % 4, correct=38 + k) for k in range(12)]
    b = [metrics_window("CamB", 600 * k, images=30, uncertain=2) for k in range(4)]
    store.write_batch(a + b, [])
    old = ids_of(store, metrics)
    age(store, metrics, old, days=20)
    recent = [metrics_window("CamA", 600 * k, images=50, uncertain=1, correct=45) for k in range(12, 15)]
    store.write_batch(recent, [])

    book = store.retention()
    done = book.roll_up(before=time.time() - 14 * DAY, limit=1000)

    assert (done.windows, len(ids_of(store, metrics))) == (16, 3)
    with store.engine.connect() as conn:
        left = {r.metric_id for r in conn.execute(sa.select(metric_cameras.c.metric_id))}
    assert left == set(ids_of(store, metrics))  # the per-camera rows went with their windows
    want: dict[tuple[str, int], list[int]] = {}
    for m, cam in [(m, "CamA") for m in a] + [(m, "CamB") for m in b]:
        hour = int((WINDOW_T0 + int(m.id.rsplit("m", 1)[1])) // HOUR) * HOUR
        s = want.setdefault((cam, hour), [0, 0, 0, 0, 0])
        s[0] += 1
        s[1] += m.total
        s[2] += m.uncertain
        s[3] += m.labelled or 0
        s[4] += m.correct or 0
    got = {
        (r.camera, r.hour): [r.windows, r.images, r.uncertain, r.labelled, r.correct] for r in book.hourly()
    }
    assert got == want and done.hourly_rows == len(want)
    camera_a = [r for r in book.hourly("CamA")]
    assert sum(r.correct for r in camera_a) / sum(r.labelled for r in camera_a) == sum(
        m.correct for m in a
    ) / sum(m.labelled for m in a)
    assert sum(r.uncertain for r in camera_a) == sum(k % 4 for k in range(12))


def test_each_roll_up_is_one_bounded_batch_and_batches_add_into_the_same_hour(store):
    store.write_batch([metrics_window("CamA", k, images=10, uncertain=1) for k in range(12)], [])
    age(store, metrics, ids_of(store, metrics), days=30)
    book = store.retention()
    sizes = []
    while (done := book.roll_up(before=time.time() - DAY, limit=5)).windows:
        sizes.append(done.windows)
        assert len(ids_of(store, metrics)) == 12 - sum(sizes)
    assert sizes == [5, 5, 2]
    [row] = book.hourly()  # 12 one-second windows: one hour, three batches added into one row
    assert (row.windows, row.images, row.uncertain) == (12, 120, 12)
    assert (row.first_ts, row.last_ts) == (WINDOW_T0, WINDOW_T0 + 11)


def test_windows_younger_than_the_cut_are_kept_at_full_resolution(store):
    store.write_batch([metrics_window("CamA", k, images=10, uncertain=1) for k in range(4)], [])
    assert store.retention().roll_up(before=time.time() - 14 * DAY).windows == 0
    assert len(ids_of(store, metrics)) == 4 and store.retention().hourly() == []


def test_old_unlabelled_images_go_labelled_and_resolved_ones_stay(store):
    store.write_batch([], [make_image("CamA", i) for i in range(10)])
    age(store, uncertain_images, ids_of(store, uncertain_images), days=8)
    store.write_batch([], [make_image("CamA", i) for i in range(10, 12)])  # two recent ones
    for i in (1, 4, 7):
        store.add_label(f"CamA/r1/i{i}", str(i % 10), "ana")
    store.add_resolution("CamA/r1/i9", "9", "rev")
    labels_before = len(store.labels())

    book = store.retention()
    deleted, last = book.prune_images(before=time.time() - 7 * DAY, limit=4)
    assert deleted == 3 and last == 4  # ids 1..4 are i0..i3: i1 has a label, the other three went
    deleted2, last2 = book.prune_images(before=time.time() - 7 * DAY, limit=100, after=last)
    assert (deleted2, last2) == (3, 10)  # the rest of the old ones; the two recent ones are not old
    assert sorted(i for i in range(12) if store.image(f"CamA/r1/i{i}") is not None) == [1, 4, 7, 9, 10, 11]
    assert len(store.labels()) == labels_before  # labels are never pruned
    assert book.prune_images(before=time.time() - 7 * DAY, limit=100, after=last2) == (0, 10)
