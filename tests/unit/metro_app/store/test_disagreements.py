"""Disagreement images in the store: kept with their shadow keys, listed newest first, counted into pairs."""

from __future__ import annotations

import dataclasses

from metro_app.samples import make_image
from metro_app.store import image_row_to_dict


def disagreement(camera: str, n: int, serving: int, shadow: int, version: str = "m-2", true_class=None):
    scores = tuple(0.9 if k == shadow else 0.1 / 9 for k in range(10))
    return dataclasses.replace(
        make_image(camera, n), result_class=serving, true_class=true_class,
        shadow_version=version, shadow_predicted=shadow, shadow_scores=scores,
    )  # fmt: skip


def test_the_shadow_keys_are_stored_and_served_back(store):
    img = disagreement("Line3-h", 1, serving=1, shadow=7)
    store.write_batch([], [img])
    row = store.image(img.id)
    assert (row.shadow_version, row.shadow_predicted) == ("m-2", 7)
    back = image_row_to_dict(row)
    assert (back["shadow_version"], back["shadow_predicted"], back["result_class"]) == ("m-2", 7, 1)
    assert back["shadow_scores"] == list(img.shadow_scores)
    assert "shadow_version" not in image_row_to_dict(store.image(_plain(store).id))


def _plain(store):
    img = make_image("Line3-h", 30)
    store.write_batch([], [img])
    return img


def test_listing_is_newest_first_on_the_canary_cameras_with_after_paging(store):
    images = [disagreement("Line3-h", i, serving=1, shadow=7) for i in range(4)]
    images += [
        disagreement("Line4-h", 9, serving=1, shadow=7),
        disagreement("Line3-h", 8, 2, 3, version="m-9"),
    ]
    plain = make_image("Line3-h", 20)  # an uncertain image without a shadow: not a disagreement
    store.write_batch([], [*images, plain])
    book = store.disagreement_book()
    items = book.listing("m-2", ["Line3"])
    assert [i["image_id"] for i in items] == [f"Line3-h/r1/i{n}" for n in (3, 2, 1, 0)]
    assert items[0] | {"seq": 0} == {
        "seq": 0, "image_id": "Line3-h/r1/i3", "camera": "Line3-h", "predicted": 1, "shadow_predicted": 7,
        "label": None,
    }  # fmt: skip
    newer = book.listing("m-2", ["Line3"], after=items[2]["seq"])
    assert [i["image_id"] for i in newer] == ["Line3-h/r1/i3", "Line3-h/r1/i2"]
    assert [i["image_id"] for i in book.listing("m-2", ["Line3"], limit=1)] == ["Line3-h/r1/i3"]


def test_pairs_count_who_was_right_on_the_labelled_disagreements(store):
    images = [
        disagreement("Line3-h", 0, serving=1, shadow=7),  # labelled 1: serving right
        disagreement("Line3-h", 1, serving=1, shadow=7),  # labelled 7: candidate right
        disagreement("Line3-h", 2, serving=1, shadow=7),  # labelled 4: neither
        disagreement("Line3-h", 3, serving=3, shadow=8),  # unlabelled
        disagreement("Line3-h", 4, serving=3, shadow=8, true_class=3),  # its source knew: serving right
        disagreement("Line3-h", 5, serving=3, shadow=8),  # labelled 8, then "not a digit": no truth
    ]
    store.write_batch([], images)
    for n, label in ((0, "1"), (1, "7"), (2, "4"), (5, "8"), (5, "smudge")):
        assert store.add_label(f"Line3-h/r1/i{n}", label, "ann") is not None
    store.add_label("Line3-h/r1/i0", "7", "bob")  # the latest digit label wins
    store.add_label("Line3-h/r1/i0", "1", "ann")
    pairs = store.disagreement_book().pairs("m-2", ["Line3"])
    assert pairs == {
        "disagreements": 6, "labelled": 4, "candidate_right": 1, "serving_right": 2, "neither_right": 1,
    }  # fmt: skip
    assert store.disagreement_book().pairs("m-2", ["Line4"])["disagreements"] == 0
    assert [i["label"] for i in store.disagreement_book().listing("m-2", ["Line3"])] == [
        None,
        3,
        None,
        4,
        7,
        1,
    ]
