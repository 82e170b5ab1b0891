"""A drifting camera for the learning-loop tests: the bundled digits rotated, as uncertain-image messages.

Rotation is the edge's own `--distort rotate:DEG` (edgemnist.distort), applied to the 28x28 digits
before they become camera frames.
"""

from __future__ import annotations

import base64
from pathlib import Path

from edgemnist.data import Dataset, encode_frames, load_bundled
from edgemnist.distort import parse_distortion
from edgemnist.model import CONFIDENCE, load_model
from edgemnist.prep import prepare_frames
from edgemnist.wire.messages import UncertainImage, utc_timestamp

__all__ = ["rotated", "rotated_uncertain"]


def rotated(dataset: Dataset, degrees: float) -> Dataset:
    """The digits turned by `degrees` as `edge-app run --distort rotate:DEG` turns them, labels kept."""
    turn = parse_distortion(f"rotate:{degrees:g}")
    return Dataset(f"{dataset.name}-rotate{degrees:g}", turn.apply(dataset.images), dataset.labels)


def rotated_uncertain(
    model_path: Path, n: int, *, part: str = "train", degrees: float = 25, camera: str = "RotA-test"
) -> list[UncertainImage]:
    """The first `n` frames of the rotated split that the model is unsure of, as an edge would send them."""
    data = rotated(load_bundled(part), degrees)
    frames = encode_frames(data)
    prepared = prepare_frames(frames.frames)
    proba = load_model(model_path).predict_proba(prepared.images)
    out = []
    for row, pos in enumerate(prepared.index):
        p = proba[row]
        if p.max() > CONFIDENCE:
            continue
        out.append(
            UncertainImage(
                count=int(pos),
                image=base64.b64encode(frames.frames[pos]).decode("ascii"),
                camera=camera,
                timestamp=utc_timestamp(),
                prepared_image=prepared.images[row],
                prep_time=0.001,
                predictions=tuple(float(x) for x in p),
                result_class=int(p.argmax()),
                result_probability=float(p.max()),
                predict_time=0.001,
                id=f"{camera}/rot/{pos}",
                true_class=int(frames.labels[pos]),  # type: ignore[index]
            )
        )
        if len(out) == n:
            break
    return out
