"""`check_png`'s fixed-offset pass for the layout cameras write decides every PNG as the chunk walker does."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemnist import png
from edgemnist.errors import SchemaError
from tests.wirecases import FLIPS, PNGS, make_png


def general(data: bytes) -> tuple[int, int] | str:
    """What the chunk walker alone decides: (width, height) or the error text."""
    with mock.patch.object(png, "_simple_size", lambda data: None):
        return decided(data)


def decided(data: bytes) -> tuple[int, int] | str:
    try:
        return png.check_png(data, "images[0]")
    except SchemaError as exc:
        return str(exc)


@pytest.mark.parametrize("name", sorted(PNGS))
def test_each_layout_is_decided_as_the_chunk_walker_decides(name):
    data = PNGS[name]
    assert decided(data) == general(data), name


@pytest.mark.parametrize("name", sorted(FLIPS))
def test_each_damaged_byte_is_refused_with_the_chunk_walkers_reason(name):
    data = FLIPS[name](make_png())
    got = decided(data)
    assert isinstance(got, str) and got.startswith("images[0] is ") and got == general(data)


def test_the_camera_layout_takes_the_fixed_offset_pass_and_others_do_not():
    assert png._simple_size(make_png()) == (28, 28) == png._simple_size(make_png(colour=2))
    for name in (
        "two IDATs",
        "text chunk before IDAT",
        "data after IEND",
        "text chunk after IDAT",
        "palette with PLTE",
    ):
        assert png._simple_size(PNGS[name]) is None and isinstance(general(PNGS[name]), tuple), name
    for name in ("filter type 5", "a row short", "a row more", "palette without PLTE", "IDATs apart"):
        assert png._simple_size(PNGS[name]) is None and isinstance(general(PNGS[name]), str), name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(PNGS)),
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=3),
    st.integers(0, 200),
)
def test_any_corruption_of_any_layout_is_decided_as_the_chunk_walker_decides(name, flips, cut):
    data = bytearray(PNGS[name])
    for at, bits in flips:
        if at < len(data):
            data[at] ^= bits
    damaged = bytes(data[: len(data) - cut]) if cut < 20 else bytes(data)
    assert decided(damaged) == general(damaged)
