"""--distort: specs parse (or fail naming the bad part), shapes and labels survive, the effect is real."""

import io

import numpy as np
import pytest
from PIL import Image

from edgemnist.data import load_bundled, load_frames
from edgemnist.distort import distorted_frames, parse_distortion
from edgemnist.errors import ConfigError
from edgemnist.prep import prepare_frames


def test_specs_parse_in_order_and_print_back():
    spec = parse_distortion(" rotate:25 , thicken:1,noise:8")
    assert [(s.kind, s.amount) for s in spec.steps] == [("rotate", 25.0), ("thicken", 1.0), ("noise", 8.0)]
    assert str(spec) == "rotate:25,thicken:1,noise:8"
    assert not parse_distortion("") and not parse_distortion(None)


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("blur:3", "'blur:3' is not one of rotate:N, thicken:N, noise:N"),
        ("rotate:25,spin", "'spin'"),
        ("rotate:abc", "'abc' is not a number"),
        ("thicken:1.5", "thicken takes a whole number from 0 to 5"),
        ("noise:-1", "noise takes a number from 0 to 255"),
        ("rotate:nan", "'rotate:nan'"),
        ("rotate:25,,noise:8", "part ''"),
    ],
)
def test_bad_specs_raise_config_error_naming_the_part(spec, names):
    with pytest.raises(ConfigError, match=f"--distort '{spec}'.*") as err:
        parse_distortion(spec)
    assert names in str(err.value)


def test_steps_keep_shape_dtype_and_do_what_they_say():
    img = np.zeros((1, 28, 28), dtype=np.uint8)
    img[0, 6:22, 13:15] = 255  # a vertical stroke
    rotated = parse_distortion("rotate:90").apply(img)
    assert rotated.shape == (1, 28, 28) and rotated.dtype == np.uint8
    rows, cols = np.nonzero(rotated[0] > 128)
    assert np.ptp(cols) > 12 and np.ptp(rows) <= 3  # now horizontal
    thick = parse_distortion("thicken:1").apply(img)
    assert (thick >= img).all() and (thick > 0).sum() > (img > 0).sum()
    grey = np.full((4, 28, 28), 128, dtype=np.uint8)
    noisy = parse_distortion("noise:8").apply(grey)
    assert 7 < (noisy.astype(float) - 128).std() < 9  # sigma 8 grey levels
    assert np.array_equal(noisy, parse_distortion("noise:8").apply(grey)), "noise is seeded"
    assert parse_distortion("noise:200").apply(img).max() == 255  # clipped, not wrapped
    assert np.array_equal(parse_distortion("rotate:0").apply(img), img)


def test_distorted_frames_keep_labels_and_count():
    plain, turned = load_frames("bundled"), distorted_frames("bundled", "rotate:25")
    assert len(turned.frames) == len(plain.frames) == 1000
    assert np.array_equal(turned.labels, plain.labels)
    assert turned.frames[0] != plain.frames[0] and turned.frames[0][:8] == b"\x89PNG\r\n\x1a\n"
    assert distorted_frames("bundled", "") is plain or distorted_frames("bundled", "").frames == plain.frames


def test_png_folders_are_distorted_too(tmp_path):
    digits = load_bundled("stream")
    for i in range(3):
        Image.fromarray(255 - digits.images[i]).save(tmp_path / f"{digits.labels[i]}_{i:04d}.png")
    frames = distorted_frames(f"png:{tmp_path}", "rotate:30")
    assert list(frames.labels) == list(digits.labels[:3])
    with Image.open(io.BytesIO(frames.frames[0])) as img:
        back = 255 - np.asarray(img.convert("L"))
    assert np.array_equal(back, parse_distortion("rotate:30").apply(digits.images[:1])[0])
    assert len(prepare_frames(frames.frames).index) == 3
