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

__all__ = ["SIGNATURE", "IHDR_SIZE", "Header", "ChunkError", "read_header", "chunks"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
IHDR_SIZE = 13  # bytes of IHDR data, fixed by the PNG spec
_CHUNK = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
_MAX_LENGTH = 2**31 - 1  # the largest chunk length the spec allows


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
