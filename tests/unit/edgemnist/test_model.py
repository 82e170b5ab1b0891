"""Model: accuracy on held-out digits, skops round trip, and refusal of anything suspicious."""

from __future__ import annotations

import json
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from edgemnist.data import encode_frames, load_bundled
from edgemnist.errors import DataError, ModelError
from edgemnist.model import Model, evaluate, load_model, load_model_bytes, save_model, train_model
from edgemnist.prep import prepare_batch

CARD_KEYS = {"version", "sha256", "dataset", "n_train", "n_test", "accuracy", "uncertain_share", "confidence"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Train once for the module on the bundled 4,000 digits and save it."""
    estimator = train_model(load_bundled("train"), seed=0, progress=False)
    metrics = evaluate(Model(estimator, "unsaved", ""), load_bundled("stream"))
    return save_model(
        estimator,
        tmp_path_factory.mktemp("models"),
        dataset="bundled",
        n_train=4000,
        n_test=metrics["n"],
        accuracy=metrics["accuracy"],
        uncertain_share=metrics["uncertain_share"],
    )


@pytest.fixture(scope="module")
def stream_images() -> np.ndarray:
    return prepare_batch(encode_frames(load_bundled("stream")).frames)


def test_held_out_accuracy(saved) -> None:
    model = load_model(saved[0])
    metrics = evaluate(model, load_bundled("stream"))
    assert metrics["n"] == 1000
    assert metrics["accuracy"] >= 0.96
    assert 0.0 <= metrics["uncertain_share"] < 0.1
    card = json.loads(saved[1].read_text())
    assert card["accuracy"] == metrics["accuracy"]


def test_card_and_round_trip(saved, stream_images) -> None:
    model_path, card_path = saved
    card = json.loads(card_path.read_text())
    assert CARD_KEYS <= card.keys() and {"created", "estimator", "sklearn_version"} <= card.keys()
    assert card["created"].endswith("Z") and model_path.name == f"{card['version']}.skops"
    model = load_model(model_path)
    assert (model.version, model.sha256, model.path) == (card["version"], card["sha256"], model_path)
    again = load_model_bytes(model_path.read_bytes(), expected_sha256=card["sha256"], version="v")
    flat = stream_images.reshape(len(stream_images), -1)
    proba = model.predict_proba(stream_images)
    assert proba.shape == (1000, 10) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba, again.predict_proba(flat))
    assert model.predict_proba(stream_images[:0]).shape == (0, 10)


def test_missing_classes_still_give_ten_columns() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 784)).astype(np.uint8)
    estimator = LogisticRegression(max_iter=50).fit(x, np.repeat([1, 3, 7], 10))
    proba = Model(estimator, "v", "").predict_proba(x[:4].reshape(4, 28, 28))
    assert proba.shape == (4, 10)
    assert not proba[:, [0, 2, 4, 5, 6, 8, 9]].any()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_tampered_file_refused(saved, tmp_path: Path) -> None:
    model_path, card_path = saved
    copy = tmp_path / model_path.name
    shutil.copy(card_path, tmp_path / card_path.name)
    data = bytearray(model_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"{copy.name}.*tampered"):
        load_model(copy)


def _with_card(path: Path, data: bytes) -> Path:
    """Write a model with an honest card, so only the content check can refuse it."""
    import hashlib

    path.write_bytes(data)
    card = {"version": path.stem, "sha256": hashlib.sha256(data).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def test_types_outside_the_allow_list_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 784)), np.arange(20) % 10
    svc = make_pipeline(SVC()).fit(x, y)  # skops trusts SVC; our list does not
    path = _with_card(tmp_path / "svc.skops", sio.dumps(svc))
    with pytest.raises(ModelError, match="svc.skops.*allow-list.*sklearn.svm._classes.SVC"):
        load_model(path)
    odd = _with_card(tmp_path / "odd.skops", sio.dumps({"steps": Path("x")}))
    with pytest.raises(ModelError, match="odd.skops.*allow-list.*pathlib"):
        load_model(odd)


def test_pickle_missing_and_card_less_files(saved, tmp_path: Path) -> None:
    estimator = load_model(saved[0]).estimator
    pickled = _with_card(tmp_path / "pickled.skops", pickle.dumps(estimator))
    with pytest.raises(ModelError, match="pickled.skops.*not a skops model"):
        load_model(pickled)
    with pytest.raises(ModelError, match="absent.skops"):
        load_model(tmp_path / "absent.skops")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="empty: no \\*.skops model"):
        load_model(tmp_path / "empty")
    bare = tmp_path / "bare.skops"
    shutil.copy(saved[0], bare)
    with pytest.raises(ModelError, match="<bytes>.*does not match"):
        load_model_bytes(bare.read_bytes(), expected_sha256="0" * 64)


def test_a_model_without_a_verifiable_card_is_refused(saved, tmp_path: Path) -> None:
    """Issue 14, item 6: without a card (or its sha256) altered weights ran under the genuine name."""
    genuine = load_model(saved[0])
    data = bytearray(saved[0].read_bytes())
    altered = sio.dumps(LogisticRegression().fit(np.eye(10, 784), np.arange(10)))
    bare = tmp_path / f"{genuine.version}.skops"
    bare.write_bytes(altered)
    with pytest.raises(ModelError, match=rf"{bare.name}: no model card {genuine.version}\.json.*unverified"):
        load_model(bare)
    for card in ({"version": genuine.version}, {"version": genuine.version, "sha256": "abc"}):
        bare.with_suffix(".json").write_text(json.dumps(card))
        with pytest.raises(ModelError, match=r"no valid 'sha256'.*unverified"):
            load_model(bare)
    bare.write_bytes(bytes(data))  # the genuine bytes with an honest card still load
    bare.with_suffix(".json").write_text(json.dumps({"version": genuine.version, "sha256": genuine.sha256}))
    assert load_model(bare).version == genuine.version


def test_directory_loads_newest(saved, tmp_path: Path) -> None:
    estimator = load_model(saved[0]).estimator
    kwargs = {"dataset": "bundled", "n_train": 1, "n_test": 1, "accuracy": 1.0, "uncertain_share": 0.0}
    first, _ = save_model(estimator, tmp_path, **kwargs)
    time.sleep(0.01)
    second, _ = save_model(LogisticRegression().fit(np.eye(10, 784), np.arange(10)), tmp_path, **kwargs)
    assert load_model(tmp_path).path == second
    assert load_model(first).path == first


def test_evaluate_needs_labels() -> None:
    stream = load_bundled("stream")
    unlabelled = type(stream)("nolabels", stream.images[:5], None)
    with pytest.raises(DataError, match="nolabels: labels"):
        evaluate(Model(LogisticRegression(), "v", ""), unlabelled)


def test_ensure_model_trains_once_into_an_empty_directory_then_reuses_it(tmp_path: Path) -> None:
    from edgemnist.model import ensure_model

    first = ensure_model(tmp_path / "models")
    assert first.suffix == ".skops" and first.with_suffix(".json").exists()
    assert ensure_model(tmp_path / "models") == first == load_model(tmp_path / "models").path
    with pytest.raises(ModelError, match="no such model file"):
        ensure_model(tmp_path / "missing.skops")


def _skops_with_schema(schema: bytes) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", schema)
    return buf.getvalue()


def test_a_schema_that_unpacks_to_megabytes_is_refused_before_it_is_read() -> None:
    """Issue 24.6: a small skops file whose schema.json unpacks to far more than any model's."""
    data = _skops_with_schema(b'{"__class__": "x", "pad": "' + b" " * (24 * 2**20) + b'"}')
    assert len(data) < 200_000
    with pytest.raises(ModelError, match="schema.json unpacks to 25165.* bytes, more than"):
        load_model_bytes(data, expected_sha256=None, name="big.skops")


def test_a_member_that_unpacks_beyond_the_limit_is_refused() -> None:
    import io
    import zipfile

    from edgemnist.model import MAX_MODEL_UNPACKED_BYTES

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", b"{}")
        archive.writestr("weights.npy", bytes(MAX_MODEL_UNPACKED_BYTES + 1))
    with pytest.raises(ModelError, match="members unpack to .* bytes, more than"):
        load_model_bytes(buf.getvalue(), expected_sha256=None, name="wide.skops")


def test_a_deeply_nested_schema_is_refused_with_a_reason() -> None:
    """Issue 24.6: nesting deep enough to blow the recursion limit is a ModelError, not a RecursionError."""
    deep = _skops_with_schema(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ModelError, match="deep.skops: schema.json nests .* levels deep, more than"):
        load_model_bytes(deep, expected_sha256=None, name="deep.skops")
    quoted = _skops_with_schema(b'{"a": "' + b"[" * 5000 + b'"}')  # brackets inside a string are text
    with pytest.raises(ModelError, match="not a fitted|cannot load"):
        load_model_bytes(quoted, expected_sha256=None, name="quoted.skops")


def test_a_real_model_passes_the_archive_limits(saved) -> None:
    model_path, _ = saved
    assert load_model(model_path).predict_proba(np.zeros((1, 28, 28), np.uint8)).shape == (1, 10)
