"""The hub's PNG check (header, size bound, chunk CRCs, zlib inflate) accepts every PNG Pillow writes
and refuses every truncation and corruption of them."""

import base64
import io
import zlib

import numpy as np
import pytest
from PIL import Image

from edgemnist.errors import SchemaError
from edgemnist.wire.messages import Origin
from metro_app.ingest.validate import _check_png
from metro_app.samples import make_image


def with_png(data: bytes):
    m = make_image("Cam", 1)
    object.__setattr__(m, "image", base64.b64encode(data).decode())
    return m


def pillow_png(mode: str, size: tuple[int, int], interlace: int) -> bytes:
    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG", interlace=interlace)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
@pytest.mark.parametrize("size", [(28, 28), (1, 1), (33, 7)])
@pytest.mark.parametrize("interlace", [0, 1])
def test_pillow_pngs_pass_and_every_truncation_or_flipped_byte_is_refused(mode, size, interlace):
    data = pillow_png(mode, size, interlace)
    _check_png(with_png(data), Origin())
    Image.open(io.BytesIO(data)).load()  # what the check replaced agrees
    for cut in range(0, len(data) - 1, 3):
        with pytest.raises(SchemaError, match="events\\[0\\]@5: key 'image'"):
            _check_png(with_png(data[:cut]), Origin("events", 0, 5))
    for at in range(8, len(data), 5):
        bad = bytearray(data)
        bad[at] ^= 0x10
        with pytest.raises(SchemaError):
            _check_png(with_png(bytes(bad)), Origin())


def chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def grey(width: int, height: int, rows: bytes, colour: int = 0, extra: bytes = b"") -> bytes:
    head = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, colour, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + extra + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))  # fmt: skip


@pytest.mark.parametrize(
    "data, why",
    [
        (grey(4, 2, b"\x00" * 5 * 2 + b"\x00"), "larger than its header says"),
        (grey(4, 2, b"\x00" * 9), "truncated: 9 of 10 bytes"),
        (grey(4, 2, b"\x07" + b"\x00" * 9), "unknown row filter type"),
        (grey(4, 2, b"\x00" * 10, colour=3), "palette image without PLTE"),
        (grey(4, 2, b"\x00" * 10, colour=1), "bad IHDR"),
        (grey(2000, 1, b"\x00" * 2001), "is a 2000x1 PNG; each side must be 1..1024"),
    ],
)
def test_well_formed_chunks_with_wrong_contents_are_refused_naming_why(data, why):
    with pytest.raises(SchemaError, match=why):
        _check_png(with_png(data), Origin())
    assert _check_png(with_png(grey(4, 2, b"\x00" * 10)), Origin()) is None
