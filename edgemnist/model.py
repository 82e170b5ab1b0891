"""Train, save, verify and load the digit classifier.

The model is a small scikit-learn Pipeline chosen for the edge's budget:
PCA (40, whitened) -> degree-2 polynomial features -> standardise ->
logistic regression. Trained on the bundled 4,000 digits shifted by one
pixel in each direction, it reaches about 0.97 on the 1,000 held-out digits
and scores ~90k images/s on one core (an RBF SVC: 0.95 and ~2k/s).

Models are stored with skops, never pickle, next to a JSON model card that
carries their sha256; loading checks the hash and refuses any type outside
an explicit allow-list, so a model file cannot run code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops
import skops.io as sio
from tqdm.auto import tqdm

from edgemnist.data import Dataset, encode_frames
from edgemnist.errors import DataError, ModelError
from edgemnist.files import write_atomic
from edgemnist.prep import CANVAS, PIXELS, prepare_frames
from edgemnist.uncertainty import CONFIDENCE, is_uncertain

__all__ = [
    "CONFIDENCE",
    "MODEL_INPUT",
    "TRUSTED_TYPES",
    "Model",
    "dump_model",
    "ensure_model",
    "evaluate",
    "load_model",
    "load_model_bytes",
    "prepared_dataset",
    "save_model",
    "train_default",
    "train_model",
]

# what a model card says a model takes
MODEL_INPUT = f"prepared {CANVAS}x{CANVAS} uint8 images (edgemnist.prep), flattened to {PIXELS}"

N_CLASSES = 10
PCA_COMPONENTS = 40
AUGMENT_LIMIT = 100_000  # shifted copies only while the augmented set stays this small
_SHIFTS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))

# Every type a model file may contain: what our pipeline is made of. skops
# trusts all of scikit-learn and NumPy by default (get_untrusted_types returns
# [] for our model), so we audit the file against this stricter list too.
TRUSTED_TYPES = (
    "sklearn.pipeline.Pipeline",
    "sklearn.decomposition._pca.PCA",
    "sklearn.preprocessing._polynomial.PolynomialFeatures",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "numpy.ndarray",
    "numpy.float64",
    "numpy.int64",
    "numpy.int32",
    "builtins.dict",
    "builtins.list",
    "builtins.tuple",
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.NoneType",
)


@dataclass(frozen=True, slots=True, eq=False)
class Model:
    """A verified, loaded classifier with the identity the edge reports as ``model_version``."""

    estimator: Any
    version: str
    sha256: str
    path: Path | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, 10) float64 scores for prepared (N, 28, 28) or (N, 784) images, one column per digit."""
        x = np.asarray(x)
        flat = x.reshape(x.shape[0], int(np.prod(x.shape[1:]))) if x.ndim >= 2 else x
        if flat.ndim != 2 or flat.shape[1] != PIXELS:
            raise ValueError(
                f"model {self.version}: expected (N, {CANVAS}, {CANVAS}) or (N, {PIXELS}) images, got {x.shape}"
            )
        if not len(flat):
            return np.zeros((0, N_CLASSES))
        proba = np.asarray(self.estimator.predict_proba(flat), dtype=np.float64)
        classes = np.asarray(self.estimator.classes_)
        if proba.shape[1] == N_CLASSES and np.array_equal(classes, np.arange(N_CLASSES)):
            return proba
        full = np.zeros((len(flat), N_CLASSES))
        full[:, classes.astype(np.intp)] = proba
        return full


def _prepared(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Images as the edge sees them (camera frame -> prep), with their labels."""
    if dataset.labels is None:
        raise DataError(f"{dataset.name}: labels are needed to train or evaluate")
    prepared = prepare_frames(encode_frames(dataset).frames)
    return prepared.images, dataset.labels[prepared.index]


def _shifted(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images moved by up to one pixel each way: the jitter centring by rounding introduces."""
    if len(images) * len(_SHIFTS) > AUGMENT_LIMIT:
        return images, labels
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    copies = [padded[:, 1 + dy : 29 + dy, 1 + dx : 29 + dx] for dy, dx in _SHIFTS]
    return np.concatenate(copies), np.tile(labels, len(copies))


def _pipeline(seed: int) -> Any:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    return Pipeline(
        [
            ("pca", PCA(PCA_COMPONENTS, whiten=True, svd_solver="covariance_eigh", random_state=seed)),
            ("poly", PolynomialFeatures(degree=2)),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(C=1.0, max_iter=500, random_state=seed)),
        ]
    )


def train_model(
    train: Dataset | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
    prepared: tuple[np.ndarray, np.ndarray] | None = None,
    field: tuple[np.ndarray, np.ndarray] | None = None,
    field_weight: int = 1,
) -> Any:
    """Fit the pipeline on the training digits passed through the edge's own preparation.

    Training on prepared camera frames (not on the raw MNIST arrays) keeps
    train and serve consistent. Stages are fitted one by one so the progress
    bar says where the time goes. Deterministic for a given seed.

    Args:
        train: base digits (MNIST convention), encoded as frames and prepared here.
        prepared: base images already prepared, (N, 28, 28) uint8, with their labels
            (instead of ``train``).
        field: labelled field images, already prepared (e.g. the hub's stored frames),
            added to the base set.
        field_weight: how many times each field image (and its shifted copies) is
            repeated, so a few hundred field labels count against tens of thousands of
            augmented base images.
    """
    if (train is None) == (prepared is None):
        raise ValueError("train_model needs exactly one of train or prepared")
    if field_weight < 1:
        raise ValueError(f"field_weight must be >= 1, got {field_weight}")
    pipeline = _pipeline(seed)
    with tqdm(total=3 + len(pipeline.steps), desc="train", disable=not progress, unit="stage") as bar:
        bar.set_postfix_str("camera frames")
        if train is not None:
            encode_frames(train)
        bar.update()
        bar.set_postfix_str("prepare")
        images, labels = _prepared(train) if train is not None else prepared  # type: ignore[misc]
        bar.update()
        bar.set_postfix_str("augment")
        images, labels = _shifted(images, labels)
        if field is not None and len(field[0]):
            f_images, f_labels = _shifted(*field)
            images = np.concatenate([images, *([f_images] * field_weight)])
            labels = np.concatenate([labels, *([f_labels] * field_weight)])
        features: Any = images.reshape(len(images), -1)
        bar.update()
        for name, step in pipeline.steps[:-1]:
            bar.set_postfix_str(name)
            features = step.fit_transform(features, labels)
            bar.update()
        bar.set_postfix_str(f"{pipeline.steps[-1][0]} on {len(labels)} images")
        pipeline.steps[-1][1].fit(features, labels)
        bar.update()
    return pipeline


def prepared_dataset(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """A labelled data set's images as the edge sees them (camera frame -> prep), with their labels."""
    return _prepared(dataset)


def evaluate(model: Model, dataset: Dataset, confidence: float = CONFIDENCE) -> dict[str, float]:
    """Accuracy and the share the edge would send home (max score <= confidence)."""
    images, labels = _prepared(dataset)
    proba = model.predict_proba(images)
    return {
        "n": len(labels),
        "accuracy": float((proba.argmax(axis=1) == labels).mean()) if len(labels) else 0.0,
        "uncertain_share": float(is_uncertain(proba.max(axis=1), confidence).mean()) if len(labels) else 0.0,
        "confidence": confidence,
    }


def _describe(estimator: Any) -> str:
    steps = getattr(estimator, "steps", [("model", estimator)])
    return " -> ".join(" ".join(repr(step).split()) for _, step in steps)


def dump_model(estimator: Any) -> tuple[str, str, bytes, datetime]:
    """(version, sha256, skops bytes, created) of an estimator, named as `save_model` names files.

    The version sorts by creation time and ends with the hash, so two models never share a name.
    """
    data = sio.dumps(estimator)
    sha = hashlib.sha256(data).hexdigest()
    now = datetime.now(UTC)
    return f"m-{now:%Y%m%dT%H%M%S}Z-{sha[:8]}", sha, data, now


def save_model(
    estimator: Any,
    out_dir: str | Path,
    *,
    dataset: str,
    n_train: int,
    n_test: int,
    accuracy: float,
    uncertain_share: float,
    confidence: float = CONFIDENCE,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<version>.skops`` and its model card ``<version>.json``; return both paths.

    The version sorts by creation time and ends with the hash, so two
    models never share a name and a directory listing shows their order.
    """
    version, sha, data, now = dump_model(estimator)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = {
        "version": version,
        "sha256": sha,
        "file": f"{version}.skops",
        "dataset": dataset,
        "n_train": int(n_train),
        "n_test": int(n_test),
        "accuracy": float(accuracy),
        "uncertain_share": float(uncertain_share),
        "confidence": float(confidence),
        "created": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "estimator": _describe(estimator),
        "input": MODEL_INPUT,
        "sklearn_version": sklearn.__version__,
        "skops_version": skops.__version__,
        **(extra or {}),
    }
    model_path, card_path = out / f"{version}.skops", out / f"{version}.json"
    write_atomic(model_path, data)
    write_atomic(card_path, (json.dumps(card, indent=2) + "\n").encode())
    return model_path, card_path


MAX_MODEL_UNPACKED_BYTES = 64 * 2**20  # all members of a skops archive, unpacked (a model is ~1 MB)
MAX_SCHEMA_BYTES = 4 * 2**20  # schema.json, unpacked
MAX_SCHEMA_DEPTH = 100  # nesting of schema.json; ours nests about 10 deep
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _json_depth(text: bytes) -> int:
    """How deep JSON arrays and objects nest, counted without parsing (so without recursion).

    >>> _json_depth(b'{"a": [1, {"b": "[[["}]}')
    3
    """
    bare = np.frombuffer(_JSON_STRING.sub(b"", text), np.uint8)
    steps = np.isin(bare, (ord("["), ord("{"))).astype(np.int64) - np.isin(bare, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _schema(data: bytes, name: str) -> Any:
    """schema.json of a skops archive, after the sizes of all members and its nesting are checked."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            total = sum(m.file_size for m in members)
            if total > MAX_MODEL_UNPACKED_BYTES:
                raise ModelError(
                    f"{name}: the archive's {len(members)} members unpack to {total} bytes, "
                    f"more than {MAX_MODEL_UNPACKED_BYTES}"
                )
            size = archive.getinfo("schema.json").file_size
            if size > MAX_SCHEMA_BYTES:
                raise ModelError(f"{name}: schema.json unpacks to {size} bytes, more than {MAX_SCHEMA_BYTES}")
            text = archive.read("schema.json")  # zipfile stops at the declared size and checks the CRC
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, NotImplementedError) as exc:
        raise ModelError(f"{name}: not a skops model file ({exc})") from exc
    depth = _json_depth(text)
    if depth > MAX_SCHEMA_DEPTH:
        raise ModelError(f"{name}: schema.json nests {depth} levels deep, more than {MAX_SCHEMA_DEPTH}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"{name}: not a skops model file ({exc})") from exc


def _types_in(data: bytes, name: str) -> set[str]:
    """Every type named in a skops file's schema, found before anything is built from it."""
    schema = _schema(data, name)
    found: set[str] = set()
    todo: list[Any] = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if "__class__" in node:
                found.add(f"{node.get('__module__')}.{node['__class__']}")
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return found


def load_model_bytes(
    data: bytes, *, expected_sha256: str | None, version: str | None = None, name: str = "<bytes>"
) -> Model:
    """Verify and load a model from bytes (a file, or a hot-reload message from Kafka)."""
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and sha != expected_sha256.lower():
        raise ModelError(f"{name}: sha256 {sha} does not match {expected_sha256}: tampered or corrupt")
    foreign = sorted(_types_in(data, name) - set(TRUSTED_TYPES))
    if foreign:
        raise ModelError(f"{name}: refusing model with types outside the allow-list: {', '.join(foreign)}")
    try:
        estimator = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # skops raises many kinds on malformed input; all mean "unusable"
        raise ModelError(f"{name}: cannot load skops model: {type(exc).__name__}: {exc}") from exc
    classes = getattr(estimator, "classes_", None)
    if (
        not hasattr(estimator, "predict_proba")
        or classes is None
        or not set(classes) <= set(range(N_CLASSES))
    ):
        raise ModelError(f"{name}: not a fitted digit classifier")
    return Model(estimator, version or f"sha-{sha[:8]}", sha, None)


def _card(path: Path) -> dict[str, Any] | None:
    card_path = path.with_suffix(".json")
    if not card_path.exists():
        return None
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{card_path}: unreadable model card: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{card_path}: model card is not a JSON object")
    return card


def _newest(directory: Path) -> Path:
    def created(path: Path) -> tuple[str, str]:
        try:
            card = _card(path) or {}
        except ModelError:
            card = {}
        return str(card.get("created", "")), path.name

    models = [p for p in directory.glob("*.skops") if p.is_file()]
    if not models:
        raise ModelError(f"{directory}: no *.skops model in this directory")
    return max(models, key=created)


def load_model(path: str | Path) -> Model:
    """Load a .skops file, or the newest model in a directory, checking it against its card.

    The card (``<name>.json`` beside the file, as ``edge-mnist train`` writes it) must exist
    and carry the file's sha256: without it nothing ties the weights to the version name, and
    altered weights could run under a genuine model's version.
    """
    path = Path(path)
    if path.is_dir():
        path = _newest(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file: {exc}") from exc
    card = _card(path)
    card_path = path.with_suffix(".json")
    if card is None:
        raise ModelError(
            f"{path}: no model card {card_path.name} beside it to verify the file against; "
            "refusing an unverified model (edge-mnist train writes the card)"
        )
    sha = card.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64 or not all(c in "0123456789abcdefABCDEF" for c in sha):
        raise ModelError(
            f"{path}: model card {card_path.name} has no valid 'sha256' to verify the file against; "
            "refusing an unverified model"
        )
    version = card.get("version", path.stem)
    if not isinstance(version, str) or not version:
        raise ModelError(f"{path}: model card {card_path.name} has no valid 'version'")
    model = load_model_bytes(data, expected_sha256=sha, version=version, name=str(path))
    return dataclasses.replace(model, path=path)


def train_default(
    out_dir: str | Path,
    data: str = "bundled",
    *,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    progress: bool = True,
) -> tuple[Path, dict[str, float]]:
    """Train the default model on `data`'s training split, evaluate it on the held-out split, save it.

    What `edge-mnist train` does; returns the model file and its held-out figures.
    """
    from edgemnist.data import load_training

    train, held_out = load_training(data)
    estimator = train_model(train, seed=seed, progress=progress)
    metrics = evaluate(Model(estimator, "unsaved", ""), held_out, confidence)
    model_path, _ = save_model(
        estimator,
        out_dir,
        dataset=data,
        n_train=len(train),
        n_test=int(metrics["n"]),
        accuracy=metrics["accuracy"],
        uncertain_share=metrics["uncertain_share"],
        confidence=confidence,
        extra={"seed": seed, "held_out": held_out.name},
    )
    return model_path, metrics


def ensure_model(path: str | Path = "models", *, progress: bool = False) -> Path:
    """The model file `load_model(path)` would load; when `path` holds none, the default model trained into it.

    Lets a fresh checkout's hub or notebook start without a separate `edge-mnist train`.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir() and any(p.is_file() for p in path.glob("*.skops")):
        return _newest(path)
    if path.suffix == ".skops":
        raise ModelError(f"{path}: no such model file")
    model_path, _ = train_default(path, progress=progress)
    return model_path
