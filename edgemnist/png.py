"""PNG framing: the signature, the IHDR header and a CRC-checked chunk walker.

Frames travel as PNG bytes from the cameras to the hub, and several places
look inside them before (or instead of) asking Pillow to decode: the edge's
fast decoder in `edgemnist.prep` takes the IDAT stream straight from the
chunks, and the hub's ingest refuses a malformed or oversized image from the
header and chunks alone, before anything is inflated. They share the framing
here so that "is this a PNG" means the same everywhere; what each of them
makes of a problem (the error text, whether to fall back to Pillow) stays
with the caller.

>>> import io
>>> from PIL import Image
>>> buf = io.BytesIO()
>>> Image.new("L", (28, 28)).save(buf, "PNG")
>>> data = buf.getvalue()
>>> data.startswith(SIGNATURE)
True
>>> read_header(data)
Header(width=28, height=28, depth=8, colour=0, compression=0, filtering=0, interlace=0)
>>> [kind for kind, _ in chunks(data)]
[b'IHDR', b'IDAT', b'IEND']

A damaged byte fails the chunk's CRC, and a cut-off file never reaches IEND:

>>> broken = data[:45] + bytes([data[45] ^ 1]) + data[46:]
>>> [kind for kind, _ in chunks(broken)]
Traceback (most recent call last):
...
edgemnist.png.ChunkError: CRC error in 'IDAT' chunk
>>> list(chunks(data[:-12]))[-1][0]
Traceback (most recent call last):
...
edgemnist.png.ChunkError: truncated: no IEND chunk
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Literal, NamedTuple

from edgemnist.errors import SchemaError

__all__ = [
    "SIGNATURE",
    "IHDR_SIZE",
    "MAX_IMAGE_SIDE",
    "MAX_RAW_BYTES",
    "Header",
    "ChunkError",
    "read_header",
    "chunks",
    "check_png",
]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
IHDR_SIZE = 13  # bytes of IHDR data, fixed by the PNG spec
_CHUNK = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
_MAX_LENGTH = 2**31 - 1  # the largest chunk length the spec allows
# Camera frames are 28x28; a frame from a PNG folder may be larger. Checked in the PNG header,
# before anything is inflated, so a small file cannot make anyone allocate gigabytes.
MAX_IMAGE_SIDE = 1024


class Header(NamedTuple):
    """The fields of an IHDR chunk, in the order the PNG spec stores them."""

    width: int
    height: int
    depth: int
    colour: int
    compression: int
    filtering: int
    interlace: int

    @classmethod
    def unpack(cls, body: bytes) -> Header:
        """The header held in an IHDR chunk's data; `struct.error` when it is too short."""
        return cls._make(_IHDR.unpack_from(body))


class ChunkError(ValueError):
    """A chunk the walker cannot read.

    Attributes:
        problem: "end" (the data stops before IEND), "truncated" (a chunk runs past
            the end of the data) or "crc" (a chunk's CRC does not match).
        kind: the chunk type, None for "end".
    """

    def __init__(self, problem: Literal["end", "truncated", "crc"], kind: bytes | None = None) -> None:
        name = kind.decode("latin-1") if kind is not None else ""
        text = {
            "end": "truncated: no IEND chunk",
            "truncated": f"truncated {name!r} chunk",
            "crc": f"CRC error in {name!r} chunk",
        }[problem]
        super().__init__(text)
        self.problem = problem
        self.kind = kind


def read_header(data: bytes) -> Header | None:
    """The header of a PNG file, from where the spec puts it (the first chunk); None if absent.

    Reads only the first 33 bytes, so a small file claiming a huge image can be
    refused before anything else is looked at. The signature and the IHDR
    chunk's CRC are not checked here: `chunks` does that.
    """
    if len(data) < len(SIGNATURE) + 12 + IHDR_SIZE or data[12:16] != b"IHDR":
        return None
    return Header.unpack(data[16 : 16 + IHDR_SIZE])


def chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Each (type, data) chunk after the signature, CRC-checked, up to and including IEND.

    The signature is not checked (callers word that refusal themselves). Raises
    `ChunkError` at the first chunk that cannot be read; the chunks before it
    have been yielded by then.
    """
    pos, end = len(SIGNATURE), len(data)
    while True:
        if pos + 12 > end:
            raise ChunkError("end")
        length, kind = _CHUNK.unpack_from(data, pos)
        stop = pos + 8 + length
        if length > _MAX_LENGTH or stop + 4 > end:
            raise ChunkError("truncated", kind)
        body = data[pos + 8 : stop]
        if zlib.crc32(body, zlib.crc32(kind)) != int.from_bytes(data[stop : stop + 4], "big"):
            raise ChunkError("crc", kind)
        yield kind, body
        if kind == b"IEND":
            return
        pos = stop + 4


# bits per pixel per PNG colour type, for each allowed bit depth (PNG spec, table 11.1)
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _raw_size(width: int, height: int, bits: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines (a filter byte per row) the IDAT stream must inflate to."""
    if not interlaced:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w and h:
            total += h * (1 + (w * bits + 7) // 8)
    return total


MAX_RAW_BYTES = _raw_size(MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, 64, False)  # the most a valid PNG may inflate to


def check_png(data: bytes, what: str = "image") -> tuple[int, int]:
    r"""(width, height) of a complete, well-formed PNG within the limits; SchemaError naming `what` if not.

    The one check every way in uses: event images, training events, prediction requests and
    HTTP push. It reads the header first (a small file claiming a huge image is refused before
    anything is inflated), verifies every chunk's CRC, requires IHDR first, PLTE for palette
    images, IDAT and IEND, then inflates the IDAT stream with zlib, bounded by the size the
    header implies, and checks it holds exactly that many bytes with a valid filter type on
    every row. A decompression bomb therefore costs at most a few megabytes. The layout cameras
    write (IHDR, one IDAT, IEND) is checked at fixed offsets first, with the same checks; any
    other layout, or a PNG that fails there, goes through the chunk walker, which words the problem.

    >>> check_png(b"GIF89a", "images[0]")
    Traceback (most recent call last):
    edgemnist.errors.SchemaError: images[0] is not a PNG (bad signature)
    >>> bomb = SIGNATURE + struct.pack(">I4sIIBBBBB", 13, b"IHDR", 20000, 20000, 1, 0, 0, 0, 0)
    >>> check_png(bomb + bytes(4), "the body")
    Traceback (most recent call last):
    edgemnist.errors.SchemaError: the body is a 20000x20000 PNG; each side must be 1..1024 pixels
    """
    size = _simple_size(data)
    if size is not None:
        return size
    if not data.startswith(SIGNATURE):
        raise SchemaError(f"{what} is not a PNG (bad signature)")
    head = read_header(data)
    if head is None:
        raise SchemaError(f"{what} is not a readable PNG (no IHDR header)")
    if not (0 < head.width <= MAX_IMAGE_SIDE and 0 < head.height <= MAX_IMAGE_SIDE):
        raise SchemaError(
            f"{what} is a {head.width}x{head.height} PNG; each side must be 1..{MAX_IMAGE_SIDE} pixels"
        )
    bad = _problem(data, head)
    if bad:
        raise SchemaError(f"{what} is not a readable PNG ({bad})")
    return head.width, head.height


# The layout cameras write: the signature, IHDR, one IDAT and IEND, each where the one before ends
_START = SIGNATURE + struct.pack(">I4s", IHDR_SIZE, b"IHDR")
_IEND = struct.pack(">I4sI", 0, b"IEND", zlib.crc32(b"IEND"))
_SIMPLE = struct.Struct(">IIBBBBBI I4s")  # IHDR's fields and CRC, then IDAT's length and type
_FILTERS = bytes(range(5))  # the row filter types PNG defines


def _simple_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when `data` is a valid PNG of exactly the layout cameras write; None when not sure.

    The same checks as `_problem`, made at fixed offsets with no chunk walk: a single IDAT chunk
    straight after IHDR, IEND straight after it, nothing after that, no palette, no interlace.
    None sends the caller to the general check, which accepts it after all or names the problem.
    """
    if len(data) < 57 or not data.startswith(_START) or not data.endswith(_IEND):
        return None
    width, height, depth, colour, compression, filtering, interlace, crc, length, kind = _SIMPLE.unpack_from(
        data, 16
    )
    stop = 41 + length
    if kind != b"IDAT" or stop + 16 != len(data) or colour == 3 or compression or filtering or interlace:
        return None
    sized = 0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE
    if not sized or depth not in _DEPTHS.get(colour, ()) or zlib.crc32(data[12:29]) != crc:
        return None
    if zlib.crc32(data[37:stop]) != int.from_bytes(data[stop : stop + 4], "big"):
        return None
    row = 1 + (width * depth * _CHANNELS[colour] + 7) // 8
    expected = height * row
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(data[41:stop], expected + 1)
    except zlib.error:
        return None
    if (
        len(raw) != expected
        or inflate.unconsumed_tail
        or not inflate.eof
        or raw[::row].translate(None, _FILTERS)
    ):
        return None
    return width, height


def _problem(data: bytes, head: Header) -> str | None:
    """What is wrong with a PNG whose signature and size were checked; None when nothing is."""
    width, height, depth, colour, compression, filtering, interlace = head
    if int.from_bytes(data[8:12], "big") != IHDR_SIZE or depth not in _DEPTHS.get(colour, ()):
        return f"bad IHDR: bit depth {depth}, colour type {colour}"
    if compression or filtering or interlace > 1:
        return "bad IHDR: unknown compression, filter or interlace method"
    expected = _raw_size(width, height, depth * _CHANNELS[colour], interlace == 1)
    inflate = zlib.decompressobj()
    raw = bytearray()
    seen: list[bytes] = []
    try:
        for kind, body in chunks(data):
            if kind == b"IDAT":
                if seen and seen[-1] != b"IDAT" and b"IDAT" in seen:
                    return "IDAT chunks are not consecutive"
                try:
                    raw += inflate.decompress(body, expected + 1 - len(raw))
                except zlib.error as exc:
                    return f"bad image data: {exc}"
                if len(raw) > expected or inflate.unconsumed_tail:
                    return "image data is larger than its header says"
            seen.append(kind)
    except ChunkError as exc:
        return str(exc)
    if b"IDAT" not in seen:
        return "no IDAT chunk"
    if colour == 3 and b"PLTE" not in seen:
        return "palette image without PLTE chunk"
    if not inflate.eof or len(raw) != expected:
        return f"image data truncated: {len(raw)} of {expected} bytes"
    bits = depth * _CHANNELS[colour]
    starts = (
        range(0, len(raw), 1 + (width * bits + 7) // 8)
        if interlace == 0
        else _row_starts(width, height, bits)
    )
    if max(raw[k] for k in starts) > 4:
        return "unknown row filter type"
    return None


def _row_starts(width: int, height: int, bits: int) -> list[int]:
    """Where each row's filter byte sits in an Adam7-interlaced image's inflated data."""
    out: list[int] = []
    pos = 0
    for x0, y0, dx, dy in _ADAM7:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w and h:
            row = 1 + (w * bits + 7) // 8
            out += range(pos, pos + h * row, row)
            pos += h * row
    return out
