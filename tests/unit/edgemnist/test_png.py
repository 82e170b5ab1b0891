"""`check_png`'s fixed-offset pass for the layout cameras write decides every PNG as the chunk walker does."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemnist import png
from edgemnist.errors import SchemaError


def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def make(width: int = 28, height: int = 28, depth: int = 8, colour: int = 0, *, interlace: int = 0,
         filters: bytes = b"\x00", idats: int = 1, before: bytes = b"", after_idat: bytes = b"",
         tail: bytes = b"", stream_tail: bytes = b"", rows: int | None = None) -> bytes:  # fmt: skip
    """A PNG of the camera layout by default; each keyword departs from it in one way."""
    row = 1 + (width * depth * png._CHANNELS.get(colour, 1) + 7) // 8
    pixels = bytes(k % 256 for k in range(1, row))
    raw = b"".join(filters[k % len(filters) : k % len(filters) + 1] + pixels
                   for k in range(height if rows is None else rows))  # fmt: skip
    stream = zlib.compress(raw) + stream_tail
    step = -(-len(stream) // idats)
    parts = [stream[k : k + step] for k in range(0, len(stream), step)]
    head = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (png.SIGNATURE + chunk(b"IHDR", head) + before + b"".join(chunk(b"IDAT", p) for p in parts)
            + after_idat + chunk(b"IEND", b"") + tail)  # fmt: skip


def general(data: bytes) -> tuple[int, int] | str:
    """What the chunk walker alone decides: (width, height) or the error text."""
    with mock.patch.object(png, "_simple_size", lambda data: None):
        return decided(data)


def decided(data: bytes) -> tuple[int, int] | str:
    try:
        return png.check_png(data, "images[0]")
    except SchemaError as exc:
        return str(exc)


def flip(at: Callable[[bytes], int]) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        k = at(data)
        return data[:k] + bytes([data[k] ^ 1]) + data[k + 1 :]

    return change


CASES = {
    "camera layout": make(),
    "rgb": make(colour=2),
    "one pixel": make(1, 1),
    "largest side": make(1024, 2),
    "16 bit grey": make(depth=16),
    "1 bit grey": make(depth=1),
    "grey+alpha": make(colour=4),
    "rgba": make(colour=6),
    "every filter type": make(filters=bytes(range(5))),
    "filter type 5": make(filters=b"\x00\x05"),
    "filter type 255": make(filters=b"\xff"),
    "two IDATs": make(idats=2),
    "three IDATs": make(idats=3),
    "text chunk before IDAT": make(before=chunk(b"tEXt", b"a\x00b")),
    "text chunk after IDAT": make(after_idat=chunk(b"tEXt", b"a\x00b")),
    "IDATs apart": (lambda d, k: d[:k] + chunk(b"tEXt", b"a\x00b") + d[k:])(
        make(idats=2), make(idats=2).rindex(b"IDAT") - 4
    ),
    "data after IEND": make(tail=b"junk"),
    "data after the zlib stream": make(stream_tail=b"junk"),
    "a row short": make(rows=27),
    "a row more": make(rows=29),
    "wider than the data": make(29, 28, rows=28),
    "zero width": make(0, 28),
    "too wide": make(1025, 1),
    "interlaced": make(interlace=1),
    "unknown interlace": make(interlace=2),
    "palette without PLTE": make(colour=3),
    "palette with PLTE": make(colour=3, before=chunk(b"PLTE", bytes(768))),
    "bad depth": make(depth=3),
    "bad colour type": make(colour=5),
    "truncated": make()[:-1],
    "no IEND": make()[:-12],
    "signature only": png.SIGNATURE,
    "empty": b"",
}
FLIPS = {
    "IHDR CRC": flip(lambda d: 29),
    "IHDR length": flip(lambda d: 11),
    "IDAT body": flip(lambda d: 45),
    "IDAT CRC": flip(lambda d: len(d) - 13),
    "IDAT type": flip(lambda d: 38),
    "IEND CRC": flip(lambda d: len(d) - 1),
    "IEND type": flip(lambda d: len(d) - 6),
    "IDAT length up": lambda d: d[:33] + struct.pack(">I", int.from_bytes(d[33:37], "big") + 1) + d[37:],
    "IDAT length down": lambda d: d[:33] + struct.pack(">I", int.from_bytes(d[33:37], "big") - 1) + d[37:],
    "signature": flip(lambda d: 0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_layout_is_decided_as_the_chunk_walker_decides(name):
    data = CASES[name]
    assert decided(data) == general(data), name


@pytest.mark.parametrize("name", sorted(FLIPS))
def test_each_damaged_byte_is_refused_with_the_chunk_walkers_reason(name):
    data = FLIPS[name](make())
    got = decided(data)
    assert isinstance(got, str) and got.startswith("images[0] is ") and got == general(data)


def test_the_camera_layout_takes_the_fixed_offset_pass_and_others_do_not():
    assert png._simple_size(make()) == (28, 28) == png._simple_size(make(colour=2))
    for name in (
        "two IDATs",
        "text chunk before IDAT",
        "data after IEND",
        "text chunk after IDAT",
        "palette with PLTE",
    ):
        assert png._simple_size(CASES[name]) is None and isinstance(general(CASES[name]), tuple), name
    for name in ("filter type 5", "a row short", "a row more", "palette without PLTE", "IDATs apart"):
        assert png._simple_size(CASES[name]) is None and isinstance(general(CASES[name]), str), name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(CASES)),
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=3),
    st.integers(0, 200),
)
def test_any_corruption_of_any_layout_is_decided_as_the_chunk_walker_decides(name, flips, cut):
    data = bytearray(CASES[name])
    for at, bits in flips:
        if at < len(data):
            data[at] ^= bits
    damaged = bytes(data[: len(data) - cut]) if cut < 20 else bytes(data)
    assert decided(damaged) == general(damaged)
