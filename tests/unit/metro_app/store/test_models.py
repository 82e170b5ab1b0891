"""The model registry and training images in the store: every transition kept, newest first, bytes intact."""

import base64

import pytest

from edgemnist.errors import ModelError
from metro_app.samples import make_image, png_frame

SHA = "ab" * 32


def test_a_model_is_registered_once_with_its_bytes_card_and_first_event(store):
    card = {"base_accuracy": 0.96, "field_accuracy": 0.9, "n_train": 4100, "excluded": {"Other": 2}}
    assert store.add_model("m-1", SHA, b"PK-model", status="published", reason="initial", created=100.0)
    assert store.add_model(
        "m-2", SHA, b"PK-2", parent="m-1", reason="accepted: ...", card=card, created=200.0
    )
    assert not store.add_model("m-2", SHA, b"other bytes")
    assert store.model_file("m-2") == b"PK-2"
    m2, m1 = store.models()  # newest first
    assert (m2["version"], m2["parent"], m2["status"], m2["sha256"]) == ("m-2", "m-1", "candidate", SHA)
    assert (m2["base_accuracy"], m2["field_accuracy"], m2["n_train"]) == (0.96, 0.9, 4100)
    assert m2["parent_field_accuracy"] is None and m2["card"]["excluded"] == {"Other": 2}
    assert [e["status"] for e in m2["events"]] == ["candidate"]
    assert m1["parent"] is None and m1["reason"] == "initial" and m1["created"].endswith("Z")
    assert store.counts()["models"] == 2


def test_every_status_transition_is_kept_as_an_event(store):
    store.add_model("m-1", SHA, b"1", status="published", reason="initial")
    store.add_model("m-2", SHA, b"2", parent="m-1", reason="trained")
    for status in ("canary", "published", "rolled_back"):
        store.set_model_status("m-2", status, f"now {status}")
    m = store.model("m-2")
    assert m["status"] == "rolled_back" and m["reason"] == "now rolled_back"
    assert [(e["status"], e["reason"]) for e in m["events"]] == [
        ("candidate", "trained"),
        ("canary", "now canary"),
        ("published", "now published"),
        ("rolled_back", "now rolled_back"),
    ]


def test_the_current_model_is_the_latest_published_one_still_published(store):
    assert store.current_model() is None
    store.add_model("m-1", SHA, b"1", status="published", reason="initial")
    store.add_model("m-2", SHA, b"2", parent="m-1", reason="trained")
    assert store.current_model()["version"] == "m-1"
    store.set_model_status("m-2", "published", "on topic")
    assert store.current_model()["version"] == "m-2"
    store.set_model_status("m-2", "rolled_back", "worse live")
    assert store.current_model()["version"] == "m-1"
    store.add_model("m-3", SHA, b"3", parent="m-1", reason="trained")
    store.set_model_status("m-3", "refused", "field accuracy did not rise")
    assert store.current_model()["version"] == "m-1"


def test_unknown_versions_and_statuses_are_refused_by_name(store):
    assert store.model("nope") is None and store.model_file("nope") is None
    with pytest.raises(ModelError, match="'nope'"):
        store.set_model_status("nope", "published", "x")
    with pytest.raises(ModelError, match="'shipped'"):
        store.add_model("m-1", SHA, b"1", status="shipped")


def test_training_images_are_stored_once_with_their_label(store):
    png = base64.b64encode(png_frame(3)).decode()
    item = {"id": "scanner-1", "image": png, "label": 3, "labeller": "line-7", "source": "scanner"}
    assert store.add_training_images([item, item]) == 1
    assert store.add_training_images([item]) == 0
    [label] = store.labels()
    assert (label["image_id"], label["label"], label["labeller"]) == ("scanner-1", "3", "line-7")
    assert store.training_image("scanner-1").source == "scanner"
    assert store.latest_labels() == [("scanner-1", "3", png)]


def test_latest_labels_keep_each_labellers_newest_label_and_flag_disagreement(store):
    store.write_batch([], [make_image("CamA", i) for i in range(3)])
    ids = [make_image("CamA", i).id for i in range(3)]
    store.add_label(ids[0], "4", "ana")
    store.add_label(ids[1], "Other", "ana")
    store.add_label(ids[0], "9", "ana")  # ana corrects herself: this one wins
    store.add_label(ids[2], "1", "ana")
    store.add_label(ids[2], "7", "bo")  # bo disagrees with ana: a conflict, not a correction
    latest = {image_id: label for image_id, label, _ in store.latest_labels()}
    assert latest == {ids[0]: "9", ids[1]: "Other", ids[2]: "conflict"}
