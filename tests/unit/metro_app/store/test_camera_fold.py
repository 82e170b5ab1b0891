"""A batch's uncertain images folded into the camera health rows at once equal the rows folded image by image."""

import random

import pytest
import sqlalchemy as sa

from metro_app.samples import make_image
from metro_app.store import Store
from metro_app.store.camerarows import empty_row, fold_images
from metro_app.store.schema import camera_health


def fold_image(row: dict, result_class: int, true_class: int | None) -> dict:
    """The rule one image at a time (as the store folded images before the batch fold)."""
    known = true_class is not None
    return row | {
        "stored": row["stored"] + 1,
        "known": row["known"] + known,
        "right": row["right"] + (known and result_class == true_class),
    }


@pytest.mark.parametrize("seed", range(20))
def test_folding_a_batch_equals_folding_each_image(seed):
    rng = random.Random(seed)
    cams = [f"Cam{k}" for k in range(rng.randint(1, 6))]
    rows = {c: empty_row(c) | {"stored": rng.randint(0, 9), "known": 3, "right": 2} for c in cams[:2]}
    images = [
        (rng.choice(cams), rng.randint(0, 9), rng.choice([None, *range(10)]))
        for _ in range(rng.randint(0, 60))
    ]
    one_by_one = dict(rows)
    for cam, result, true in images:
        one_by_one[cam] = fold_image(one_by_one.get(cam) or empty_row(cam), result, true)
    batch = dict(rows)
    fold_images(batch, images)
    assert batch == one_by_one
    assert list(batch) == list(one_by_one)  # the same cameras in the same order (the upsert's rows)
    assert all(type(r[k]) is int for r in batch.values() for k in ("stored", "known", "right"))


def test_health_rows_read_by_driver_sql_equal_the_rows_sqlalchemy_reads(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.write_batch([], [make_image(f"Cam{k % 3}", k) for k in range(7)])
    names = {"Cam0", "Cam2", "Nobody", "it's %s"}
    with store.engine.connect() as conn:
        got = store._health_rows(conn, names)
        want = {
            r.camera: dict(r._mapping)
            for r in conn.execute(sa.select(camera_health).where(camera_health.c.camera.in_(names)))
        }
    assert got == want and set(got) == {"Cam0", "Cam2"}
    assert {c: (r["stored"], type(r["recent"])) for c, r in got.items()} == {
        "Cam0": (3, str),
        "Cam2": (2, str),
    }
    store.close()
