"""Drifting cameras: deterministic distortions of a source's digits, labels kept.

A spec is a comma-separated list of steps applied left to right to images in
MNIST convention (background 0, ink high), before they become camera frames:

- ``rotate:DEG``: turn counter-clockwise by DEG degrees about the centre (bilinear, size kept);
- ``thicken:PX``: grey dilation with a disk of radius PX pixels (thicker strokes);
- ``noise:SIGMA``: add seeded Gaussian noise of SIGMA grey levels, clipped to 0..255.

It simulates what happens to a real camera (mounted askew, a blurred lens, a
noisy sensor) so the learning loop has something to learn, and benches and
tests reuse the same transform.

>>> spec = parse_distortion("rotate:25,noise:8")
>>> str(spec), [step.kind for step in spec.steps]
('rotate:25,noise:8', ['rotate', 'noise'])
>>> spec.apply(np.zeros((2, 28, 28), dtype=np.uint8)).shape
(2, 28, 28)
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from edgemnist.data import Dataset, Frames, encode_frames, load_source
from edgemnist.errors import ConfigError

__all__ = ["KINDS", "Step", "Distortion", "parse_distortion", "distorted_frames"]

# kind -> (lowest, highest, whole numbers only)
KINDS: dict[str, tuple[float, float, bool]] = {
    "rotate": (-360.0, 360.0, False),
    "thicken": (0.0, 5.0, True),
    "noise": (0.0, 255.0, False),
}
NOISE_SEED = 20240601


@dataclass(frozen=True, slots=True)
class Step:
    """One distortion step: its kind and amount."""

    kind: str
    amount: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.amount:g}"

    def apply(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, H, W) float64 in, (N, H, W) float64 out."""
        from scipy import ndimage

        if self.kind == "rotate":
            return ndimage.rotate(images, self.amount, axes=(2, 1), reshape=False, order=1, cval=0.0)
        if self.kind == "thicken":
            r = int(self.amount)
            yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
            disk = (yy * yy + xx * xx <= r * r)[None, :, :]
            return ndimage.grey_dilation(images, footprint=disk, mode="constant", cval=0.0)
        return images + rng.normal(0.0, self.amount, images.shape)


@dataclass(frozen=True, slots=True)
class Distortion:
    """A parsed ``--distort`` spec: steps applied left to right, noise seeded."""

    steps: tuple[Step, ...]
    seed: int = NOISE_SEED

    def __str__(self) -> str:
        return ",".join(map(str, self.steps))

    def __bool__(self) -> bool:
        return bool(self.steps)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Distort (N, H, W) uint8 images; same shape and dtype, deterministic for a given seed."""
        images = np.asarray(images)
        if images.ndim != 3:
            raise ValueError(f"distortion {self}: expected (N, H, W) images, got shape {images.shape}")
        if not self.steps:
            return images.astype(np.uint8, copy=True)
        rng = np.random.default_rng(self.seed)
        work = images.astype(np.float64)
        for step in self.steps:
            work = step.apply(work, rng)
        return np.clip(np.rint(work), 0, 255).astype(np.uint8)


def _step(part: str, spec: str) -> Step:
    kind, sep, value = part.strip().partition(":")
    kind = kind.strip().lower()
    where = f"--distort {spec!r}: part {part.strip()!r}"
    if kind not in KINDS or not sep:
        raise ConfigError(f"{where} is not one of {', '.join(f'{k}:N' for k in KINDS)}")
    lo, hi, whole = KINDS[kind]
    try:
        amount = float(value)
    except ValueError:
        raise ConfigError(f"{where}: {value.strip()!r} is not a number") from None
    if not math.isfinite(amount) or not lo <= amount <= hi or (whole and amount != int(amount)):
        kind_of = "a whole number" if whole else "a number"
        raise ConfigError(f"{where}: {kind} takes {kind_of} from {lo:g} to {hi:g}")
    return Step(kind, amount)


def parse_distortion(spec: str | None) -> Distortion:
    """Parse ``rotate:DEG``, ``thicken:PX``, ``noise:SIGMA``, comma-separated; empty = none.

    Raises:
        ConfigError: naming the part of the spec that is wrong.
    """
    if spec is None or not spec.strip():
        return Distortion(())
    return Distortion(tuple(_step(part, spec) for part in spec.split(",")))


def _png_to_array(frame: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(frame)) as img:
        return 255 - np.asarray(img.convert("L"), dtype=np.uint8)


def _array_to_png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(255 - image).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def distorted_frames(source: str | int, distortion: Distortion | str | None) -> Frames:
    """The frames of ``--source`` with the distortion applied to each image before it is encoded.

    Data sets (bundled, digits, IDX, openml) are distorted as one array; a PNG folder's
    frames are decoded (grey, inverted to MNIST convention), distorted one by one, since
    their sizes may differ, and encoded again. Labels are kept.
    """
    if not isinstance(distortion, Distortion):
        distortion = parse_distortion(distortion)
    data = load_source(source)
    if not distortion:
        return data if isinstance(data, Frames) else encode_frames(data)
    if isinstance(data, Dataset):
        return encode_frames(Dataset(f"{data.name}+{distortion}", distortion.apply(data.images), data.labels))
    frames = tuple(_array_to_png(distortion.apply(_png_to_array(f)[None])[0]) for f in data.frames)
    return Frames(f"{data.name}+{distortion}", frames, data.labels)
