"""The edge pipeline's stages, streamsx-style callables over micro-batches.

Each stage stores only picklable configuration in `__init__`, opens what it
needs in `__enter__` and handles one micro-batch per `__call__`, so the same
objects run in our runner and in a streamsx Topology. Per-image `prep_time`
and `predict_time` are the batch's time divided by its size.
"""

from __future__ import annotations

import base64
import itertools
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgemnist.data import Frames, load_frames
from edgemnist.distort import distorted_frames
from edgemnist.model import Model, load_model
from edgemnist.prep import prepare_frames
from edgemnist.uncertainty import CONFIDENCE, is_uncertain
from edgemnist.wire.messages import (
    LABEL_SLOTS,
    CameraCounts,
    EdgeConfig,
    LatencyStats,
    MetricsMessage,
    ModelRefusal,
    OutboxStats,
    ShadowStats,
    UncertainImage,
    utc_timestamp,
)

__all__ = [
    "FrameBatch",
    "Scored",
    "ImageSource",
    "Enricher",
    "ImagePrep",
    "DigitPredictor",
    "Scorer",
    "UncertainFilter",
    "MetricsWindow",
    "UploadCap",
    "ShadowCap",
    "SHADOW_CAP",
    "camera_name",
]

SHADOW_CAP = 20  # disagreement frames sent home per metrics window, by default


def camera_name(camera: str, hostname: str | None = None) -> str:
    """`<camera parameter>-<hostname>`, as the reference names a camera."""
    return f"{camera}-{hostname or socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """Frames as the camera emitted them, with their running counts and emit times."""

    frames: tuple[bytes, ...]
    labels: np.ndarray | None  # true class per frame, when the source knows it
    emitted: np.ndarray  # float64 epoch seconds per frame
    first_count: int = 0
    camera: str = ""
    run_id: str = ""
    last: bool = False  # the final batch of a finite source: a streamsx window closes on it

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True, slots=True)
class Scored:
    """The frames of a batch that decoded, prepared and scored."""

    index: np.ndarray  # positions in the FrameBatch
    prepared: np.ndarray  # (M, 28, 28) uint8
    probabilities: np.ndarray  # (M, 10) float64
    prep_time: float  # seconds per image
    predict_time: float  # seconds per image
    errors: tuple[tuple[int, str], ...] = ()
    model_version: str | None = None
    shadow_probabilities: np.ndarray | None = None  # (M, 10) by the shadow model, when one runs
    shadow_version: str | None = None
    result_class: np.ndarray = field(init=False)  # argmax per image, computed once per batch
    result_probability: np.ndarray = field(init=False)  # its probability

    def __post_init__(self) -> None:
        object.__setattr__(self, "result_class", self.probabilities.argmax(axis=1))
        object.__setattr__(self, "result_probability", self.probabilities.max(axis=1))

    @property
    def shadow_class(self) -> np.ndarray | None:
        """The shadow model's top class per image, or None without a shadow model."""
        return None if self.shadow_probabilities is None else self.shadow_probabilities.argmax(axis=1)


class ImageSource:
    """Emits the frames of a data set `repeat` times (0 = forever), `delay` seconds apart.

    Frames are grouped into micro-batches of at most `batch_size`, and a batch
    is never held back more than `max_wait` seconds, so a slow camera's images
    still flow promptly. With `distort` (``rotate:25,noise:8``) every image is
    distorted once, when the source loads, before it becomes a frame.
    """

    def __init__(
        self,
        source: str = "bundled",
        repeat: int = 0,
        delay: float = 0.0,
        batch_size: int = 256,
        max_wait: float = 0.1,
        distort: str = "",
    ) -> None:
        self._source = source
        self._distort = distort
        self._repeat = repeat
        self._delay = delay
        self._batch_size = batch_size
        self._max_wait = max_wait
        self._data: Frames | None = None

    def __enter__(self) -> ImageSource:
        self._data = (
            distorted_frames(self._source, self._distort) if self._distort else load_frames(self._source)
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._data = None

    @property
    def frames(self) -> Frames:
        if self._data is None:
            raise RuntimeError("ImageSource used outside its `with` block")
        return self._data

    def _positions(self) -> Iterator[int]:
        n = len(self.frames.frames)
        passes = itertools.count() if self._repeat == 0 else range(self._repeat)
        for _ in passes:
            yield from range(n)

    def __call__(self) -> Iterator[FrameBatch]:
        start = time.time()
        batch: list[int] = []
        stamps: list[float] = []
        final = len(self.frames.frames) * self._repeat - 1  # the last position's index; -1 = forever
        for i, pos in enumerate(self._positions()):
            if self._delay:
                due = start + i * self._delay
                if batch and due - stamps[0] > self._max_wait:
                    yield self._batch(batch, stamps)
                    batch, stamps = [], []
                pause = due - time.time()
                if pause > 0:
                    time.sleep(pause)
            batch.append(pos)
            stamps.append(time.time())
            if len(batch) >= self._batch_size:
                yield self._batch(batch, stamps, last=i == final)
                batch, stamps = [], []
        if batch:
            yield self._batch(batch, stamps, last=True)

    def _batch(self, positions: list[int], stamps: list[float], last: bool = False) -> FrameBatch:
        data = self.frames
        labels = None if data.labels is None else data.labels[positions]
        return FrameBatch(tuple(data.frames[p] for p in positions), labels, np.asarray(stamps), last=last)


class Enricher:
    """Names the camera and numbers the frames (running count, unique message ids)."""

    def __init__(self, camera: str = "Camera", hostname: str | None = None) -> None:
        self._camera = camera
        self._hostname = hostname
        self._count = 0
        self.camera = ""
        self.run_id = ""

    def __enter__(self) -> Enricher:
        self.camera = camera_name(self._camera, self._hostname)
        self.run_id = uuid.uuid4().hex[:12]
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        first = self._count
        self._count += len(batch)
        return FrameBatch(
            batch.frames, batch.labels, batch.emitted, first, self.camera, self.run_id, batch.last
        )


class ImagePrep:
    """The reference's MNIST normalisation, vectorised over a batch."""

    def __enter__(self) -> ImagePrep:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, frames: tuple[bytes, ...]) -> tuple[np.ndarray, np.ndarray, tuple, float]:
        t0 = time.perf_counter()
        prepared = prepare_frames(frames)
        elapsed = time.perf_counter() - t0
        per_image = elapsed / max(1, len(frames))
        return prepared.images, prepared.index, tuple(prepared.errors), per_image


class DigitPredictor:
    """Scores a batch of prepared images with one `predict_proba` call."""

    def __init__(self, model_path: Path | str) -> None:
        self._model_path = Path(model_path)
        self._model: Model | None = None

    def __enter__(self) -> DigitPredictor:
        self._model = load_model(self._model_path)
        return self

    def __exit__(self, *exc: object) -> None:
        self._model = None

    @property
    def model(self) -> Model:
        if self._model is None:
            raise RuntimeError("DigitPredictor used outside its `with` block")
        return self._model

    def swap(self, model: Model) -> None:
        """Use `model` from the next batch on (hot reload)."""
        self._model = model

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, float]:
        if len(images) == 0:
            return np.zeros((0, 10)), 0.0
        t0 = time.perf_counter()
        probs = self.model.predict_proba(images)
        return probs, (time.perf_counter() - t0) / len(images)


class Scorer:
    """ImagePrep then DigitPredictor: the CPU-heavy part that parallel workers run.

    With a shadow model (`shadow_swap`), the same prepared images are scored by it too: one
    more `predict_proba` per batch, reported beside the serving scores, never instead of them.
    """

    def __init__(self, model_path: Path | str) -> None:
        self._prep = ImagePrep()
        self._predictor = DigitPredictor(model_path)
        self.shadow: Model | None = None

    def __enter__(self) -> Scorer:
        self._prep.__enter__()
        self._predictor.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._predictor.__exit__(*exc)
        self._prep.__exit__(*exc)

    @property
    def model_version(self) -> str:
        return self._predictor.model.version

    @property
    def model(self) -> Model:
        return self._predictor.model

    def swap(self, model: Model) -> None:
        self._predictor.swap(model)

    def shadow_swap(self, model: Model | None) -> None:
        """Score beside `model` from the next batch on; None stops shadow scoring."""
        self.shadow = model

    def __call__(self, frames: tuple[bytes, ...]) -> Scored:
        images, index, errors, prep_time = self._prep(frames)
        probs, predict_time = self._predictor(images)
        shadow, shadow_probs = self.shadow, None
        if shadow is not None:
            shadow_probs = shadow.predict_proba(images) if len(images) else np.zeros((0, 10))
        return Scored(
            index, images, probs, prep_time, predict_time, errors, self.model_version,
            shadow_probs, None if shadow is None else shadow.version,
        )  # fmt: skip


class UncertainFilter:
    """Selects what goes home: probability at or below `confidence`, or every image of a Test camera."""

    def __init__(self, confidence: float = CONFIDENCE) -> None:
        self._confidence = confidence

    def __call__(self, batch: FrameBatch, scored: Scored) -> list[UncertainImage]:
        picked = np.flatnonzero(is_uncertain(scored.result_probability, self._confidence, batch.camera))
        return [self._message(batch, scored, int(j)) for j in picked]

    def disagreements(self, batch: FrameBatch, scored: Scored) -> list[UncertainImage]:
        """The frames whose top class differs between the serving and the shadow model, with both."""
        shadow = scored.shadow_class
        if shadow is None:
            return []
        return [self._message(batch, scored, int(j)) for j in np.flatnonzero(shadow != scored.result_class)]

    @staticmethod
    def _message(batch: FrameBatch, scored: Scored, j: int) -> UncertainImage:
        pos = int(scored.index[j])
        count = batch.first_count + pos
        shadow = scored.shadow_probabilities
        disagrees = shadow is not None and int(shadow[j].argmax()) != int(scored.result_class[j])
        return UncertainImage(
            count=count,
            image=base64.b64encode(batch.frames[pos]).decode("ascii"),
            camera=batch.camera,
            timestamp=utc_timestamp(float(batch.emitted[pos])),
            prepared_image=scored.prepared[j],
            prep_time=scored.prep_time,
            predictions=tuple(scored.probabilities[j].tolist()),
            result_class=int(scored.result_class[j]),
            result_probability=float(scored.result_probability[j]),
            predict_time=scored.predict_time,
            id=f"{batch.camera}/{batch.run_id}/{count}",
            model_version=scored.model_version,
            true_class=None if batch.labels is None else int(batch.labels[pos]),
            shadow_version=scored.shadow_version if disagrees else None,
            shadow_predicted=int(shadow[j].argmax()) if shadow is not None and disagrees else None,
            shadow_scores=tuple(shadow[j].tolist()) if shadow is not None and disagrees else None,
        )


class UploadCap:
    """At most `per_minute` uncertain images sent in any 60 seconds (a sliding window); 0 = no cap.

    A line with a broken camera must not flood the hub: images over the cap are held back
    (not sent, not stored, only counted), the earliest of a batch going first. Metrics are
    never capped. `clock` is handed in so tests can drive time.
    """

    def __init__(self, per_minute: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._sent: deque[float] = deque()
        self.held_back = 0  # since the last `take_held_back`

    def __call__(self, messages: list[UncertainImage]) -> list[UncertainImage]:
        if self._limit <= 0 or not messages:
            return messages
        now = self._clock()
        while self._sent and now - self._sent[0] >= 60.0:
            self._sent.popleft()
        room = max(0, self._limit - len(self._sent))
        kept = messages[:room]
        self._sent.extend([now] * len(kept))
        self.held_back += len(messages) - len(kept)
        return kept

    def take_held_back(self) -> int:
        """The count held back since the last call (one metrics window's worth), reset to 0."""
        n, self.held_back = self.held_back, 0
        return n


class ShadowCap:
    """At most `per_window` disagreement frames sent home per metrics window; the rest are counted.

    A shadow model that disagrees with everything must not flood the hub: the hub needs tens of
    labelled disagreements, not thousands. `held_back` is reported in the window's ``shadow``
    figures and starts again at 0 with the next window (`take_held_back`).
    """

    def __init__(self, per_window: int = SHADOW_CAP) -> None:
        self._limit = per_window
        self.sent = 0
        self.held_back = 0

    def __call__(self, messages: list[UncertainImage]) -> list[UncertainImage]:
        room = max(0, self._limit - self.sent)
        kept = messages[:room]
        self.sent += len(kept)
        self.held_back += len(messages) - len(kept)
        return kept

    def take_held_back(self) -> int:
        """The count held back in the window that ends now; the next window starts with room again."""
        n, self.held_back, self.sent = self.held_back, 0, 0
        return n


class MetricsWindow:
    """A tumbling window over every scored image; emits one metrics message per non-empty window.

    When the source knows its labels, the window also counts how many of its
    images were labelled and how many of those the model got right: live
    accuracy over every image, not only the uncertain ones sent home.
    """

    def __init__(self, duration: float, config: EdgeConfig, confidence: float = CONFIDENCE) -> None:
        self._duration = duration
        self._config = config
        self._confidence = confidence
        self._seq = 0
        self._reset(time.time())

    def _reset(self, start: float) -> None:
        self._start = start
        self._certain = np.zeros(LABEL_SLOTS, dtype=np.int64)
        self._uncertain = np.zeros(LABEL_SLOTS, dtype=np.int64)
        self._prep: list[np.ndarray] = []
        self._predict: list[np.ndarray] = []
        self._images = 0
        self._labelled: int | None = None
        self._correct = 0
        self._shadow: list = [None, 0, 0, None]  # version, images, agree, correct

    @property
    def images(self) -> int:
        """Images counted into the current window so far."""
        return self._images

    def add(self, scored: Scored, labels: np.ndarray | None = None) -> None:
        """Count a scored batch into the current window.

        Args:
            scored: the batch's scores.
            labels: the true class of every frame of the batch (``FrameBatch.labels``), when the
                source knows them; indexed here by ``scored.index``, so frames that could not be
                prepared count nowhere.
        """
        n = len(scored.index)
        if n == 0:
            return
        classes = scored.result_class
        unsure = is_uncertain(scored.result_probability, self._confidence)
        self._certain += np.bincount(classes[~unsure], minlength=LABEL_SLOTS)
        self._uncertain += np.bincount(classes[unsure], minlength=LABEL_SLOTS)
        if labels is not None:
            truth = np.asarray(labels)[scored.index]
            self._labelled = (self._labelled or 0) + n
            self._correct += int(np.count_nonzero(classes == truth))
        self._prep.append(np.full(n, scored.prep_time))
        self._predict.append(np.full(n, scored.predict_time))
        self._images += n
        self._add_shadow(scored, None if labels is None else np.asarray(labels)[scored.index])

    def _add_shadow(self, scored: Scored, truth: np.ndarray | None) -> None:
        shadow = scored.shadow_class
        if shadow is None:
            return
        if self._shadow[0] != scored.shadow_version:  # a replaced shadow model counts afresh
            self._shadow = [scored.shadow_version, 0, 0, None]
        self._shadow[1] += len(shadow)
        self._shadow[2] += int(np.count_nonzero(shadow == scored.result_class))
        if truth is not None:
            self._shadow[3] = (self._shadow[3] or 0) + int(np.count_nonzero(shadow == truth))

    def shadow(self, held_back: int = 0) -> ShadowStats | None:
        """The shadow figures of the window so far; None when no shadow model scored in it."""
        version, images, agree, correct = self._shadow
        if version is None:
            return None
        return ShadowStats(version, images, agree, correct, held_back)

    def due(self, now: float) -> bool:
        return now - self._start >= self._duration

    def close(
        self,
        now: float,
        camera: str,
        run_id: str,
        outbox: OutboxStats | None,
        model_version: str | None,
        refused: tuple[ModelRefusal, ...] = (),
        held_back: int | None = None,
        shadow_held_back: int = 0,
    ) -> MetricsMessage | None:
        """End the window at `now`; return its message, or None when it saw no image.

        `refused` lists the models refused since the last message; the caller keeps them for
        the next window when this one returns None.
        """
        start, images, labelled, correct = self._start, self._images, self._labelled, self._correct
        shadow = self.shadow(shadow_held_back)
        certain, uncertain, prep, predict = self._certain, self._uncertain, self._prep, self._predict
        self._reset(now)
        if images == 0:
            return None
        self._seq += 1
        return MetricsMessage(
            camera_metrics={camera: CameraCounts(tuple(certain.tolist()), tuple(uncertain.tolist()))},
            timestamp=utc_timestamp(now),
            config=self._config,
            prep=LatencyStats.of(np.concatenate(prep)),
            predict=LatencyStats.of(np.concatenate(predict)),
            id=f"{camera}/{run_id}/m{self._seq}",
            model_version=model_version,
            window_start=utc_timestamp(start),
            window_end=utc_timestamp(now),
            images=images,
            outbox=outbox,
            labelled=labelled,
            correct=None if labelled is None else correct,
            model_refused=tuple(refused) or None,
            held_back=held_back,
            shadow=shadow,
        )
