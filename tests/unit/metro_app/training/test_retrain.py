"""Retrain's parts without Kafka: the field set and its hold-out, the decision rule, the whole run on a store."""

import base64

import numpy as np
import pytest

from edgemnist.data import encode_frames, load_bundled
from edgemnist.errors import ConfigError
from metro_app.store import Store
from metro_app.training.fieldset import build_field_set, split_holdout
from metro_app.training.retrain import RetrainSettings, Scores, decide, retrain


def frame_rows(n, labels=None, prefix="img"):
    data = load_bundled("stream")
    frames = encode_frames(data).frames
    labels = labels if labels is not None else [str(int(x)) for x in data.labels[:n]]
    return [(f"{prefix}-{i:04d}", labels[i], base64.b64encode(frames[i]).decode()) for i in range(n)]


def test_non_digit_labels_are_excluded_and_counted():
    rows = frame_rows(12)
    rows[0] = (rows[0][0], "Camera Error", rows[0][2])
    rows[1] = (rows[1][0], "Not a Digit", rows[1][2])
    rows[2] = (rows[2][0], "2nd Opinion", rows[2][2])
    rows[3] = (rows[3][0], "Other", rows[3][2])
    rows[4] = (rows[4][0], "5", base64.b64encode(b"not a png").decode())
    field = build_field_set(rows, share=0.0)
    assert field.excluded == {
        "Camera Error": 1,
        "Not a Digit": 1,
        "2nd Opinion": 1,
        "Other": 1,
        "undecodable": 1,
    }
    assert len(field.train_ids) == 7 and len(field.test_ids) == 0
    assert field.train_images.shape == (7, 28, 28) and field.train_images.dtype == np.uint8


def test_the_holdout_is_seeded_per_class_and_never_in_training():
    rows = frame_rows(200)
    a, b = build_field_set(rows, 0.2, seed=0), build_field_set(list(reversed(rows)), 0.2, seed=0)
    other = build_field_set(rows, 0.2, seed=1)
    assert a.test_ids == b.test_ids  # the order the store returns rows in does not matter
    assert a.test_ids != other.test_ids
    assert not set(a.test_ids) & set(a.train_ids)
    assert len(a.test_ids) + len(a.train_ids) == 200
    assert 0.17 <= len(a.test_ids) / 200 <= 0.23
    assert set(a.test_labels.tolist()) == set(range(10))  # at least one of every class
    by_id = {r[0]: int(r[1]) for r in rows}
    assert [by_id[i] for i in a.test_ids] == a.test_labels.tolist()


def test_a_class_with_one_image_is_trained_on_and_small_classes_keep_one_out():
    labels = np.array([0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    held = split_holdout(labels, 0.2, seed=3)
    assert not held[0]
    assert held[1:3].sum() == 1
    assert held[3:].sum() == 2
    assert not split_holdout(labels, 0.0, seed=3).any()
    with pytest.raises(ValueError):
        split_holdout(labels, 1.0, seed=0)


@pytest.mark.parametrize(
    "cand, parent, kwargs, accepted, words",
    [
        (Scores(0.965, 0.90), Scores(0.974, 0.40), {}, True, "accepted: field accuracy 0.400 -> 0.900"),
        (Scores(0.974, 0.40), Scores(0.974, 0.40), {}, False, "field accuracy must rise"),
        (Scores(0.990, 0.35), Scores(0.974, 0.40), {}, False, "field accuracy must rise"),
        (Scores(0.950, 0.90), Scores(0.974, 0.40), {}, False, "base accuracy may fall at most 2 points"),
        (Scores(0.959, 0.90), Scores(0.974, 0.40), {}, True, "-1.5 points"),
        (Scores(0.950, 0.90), Scores(0.974, 0.40), {"max_base_drop": 3}, True, "accepted"),
        (Scores(0.974, 0.45), Scores(0.974, 0.40), {"min_field_gain": 10}, False, "more than 10 points"),
        (Scores(0.974, None), Scores(0.974, None), {}, False, "no labelled field images held out"),
    ],
)
def test_the_decision_rule(cand, parent, kwargs, accepted, words):
    ok, reason = decide(cand, parent, **kwargs)
    assert ok is accepted
    assert words in reason


def test_settings_are_checked_by_flag_name():
    with pytest.raises(ConfigError, match="--holdout"):
        RetrainSettings(holdout=1.0)
    with pytest.raises(ConfigError, match="--field-weight"):
        RetrainSettings(field_weight=0)


class FakePublisher:
    def __init__(self):
        self.published = []

    def publish(self, store, version):
        self.published.append(version)
        store.set_model_status(version, "published", "on the fake topic", supersede=True)


@pytest.fixture
def field_store(tmp_path, model_path):
    """A store holding 150 labelled uncertain images of a camera rotated 25 degrees, plus noise labels."""
    from tests.loop_data import rotated_uncertain

    store = Store(f"sqlite:///{tmp_path}/hub.db")
    msgs = rotated_uncertain(model_path, 150)
    store.write_batch([], msgs)
    for m in msgs:
        store.add_label(m.id, str((m.true_class + 1) % 10), "ana")
        store.add_label(m.id, str(m.true_class), "ana")  # ana corrects herself: her latest label counts
    store.add_label(msgs[0].id, "Not a Digit", "ana")  # the latest label wins: excluded
    yield store
    store.close()


def test_retrain_records_publishes_and_improves_the_field(field_store, model_path):
    publisher = FakePublisher()
    result = retrain(field_store, RetrainSettings(model=str(model_path)), publisher=publisher)
    parent = field_store.model(result.parent)
    assert parent["parent"] is None  # --model, registered first as serving, superseded on publication
    assert [e["status"] for e in parent["events"]] == ["serving", "superseded"]
    assert parent["status"] == "superseded" and parent["reason"] == f"superseded by {result.version}"
    assert result.accepted and result.status == "published", result.reason
    assert publisher.published == [result.version]
    assert result.n_field_train + result.n_field_test == 149
    assert result.n_train == 4000 + result.n_field_train
    assert result.field_accuracy > result.parent_field_accuracy + 0.2
    assert result.parent_base_accuracy - result.base_accuracy <= 0.015 + 1e-9  # the default rule
    card = field_store.model(result.version)
    assert card["status"] == "published" and card["parent"] == result.parent
    assert [e["status"] for e in card["events"]] == ["candidate", "published"]
    assert card["card"]["excluded"] == {"Not a Digit": 1}
    assert card["field_accuracy"] == result.field_accuracy
    assert field_store.current_model()["version"] == result.version
    # a second run's parent is the model just published
    again = retrain(field_store, RetrainSettings(model=str(model_path), max_base_drop=0.0))
    assert again.parent == result.version and again.status in ("refused", "candidate")
    assert field_store.model(again.version)["events"][0]["status"] == "candidate"


def test_retrain_without_digit_labels_makes_no_candidate(tmp_path, model_path):
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    result = retrain(store, RetrainSettings(model=str(model_path)))
    assert not result.accepted and result.version is None and "no labelled digit images" in result.reason
    assert [m["status"] for m in store.models()] == ["serving"]


def test_cli_retrain_prints_json_last_and_models_lists_the_registry(tmp_path, model_path, capsys):
    import json as _json

    from metro_app.cli import main
    from metro_app.samples import make_image

    url = f"sqlite:///{tmp_path}/hub.db"
    store = Store(url)
    store.write_batch([], [make_image("CamA", 1)])
    store.add_label(make_image("CamA", 1).id, "Other", "ana")
    store.close()
    assert main(["retrain", "--store", url, "--model", str(model_path), "--no-publish", "-q"]) == 0
    last = _json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    keys = {"version", "parent", "accepted", "reason", "base_accuracy", "field_accuracy", "parent_base_accuracy",
            "parent_field_accuracy", "n_train", "n_field_train", "n_field_test"}  # fmt: skip
    assert keys <= last.keys()
    assert last["accepted"] is False and last["version"] is None and "Other" in last["reason"]
    assert main(["models", "--store", url]) == 0
    table = capsys.readouterr().out.splitlines()
    assert (
        table[0].split()[:2] == ["version", "status"] and last["parent"] in table[1] and "serving" in table[1]
    )
    assert main(["retrain", "--store", url, "--holdout", "1.5", "--no-publish"]) == 2
    assert "--holdout" in capsys.readouterr().err
