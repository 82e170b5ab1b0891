"""The limits every PNG entering the system is held to, checked before any pixel is decoded.

One function, `check_png`, serves every way in: event images, training events, prediction
requests and HTTP push. It reads the header first, so a small file claiming a huge image is
refused before anything is inflated, then inflates the image data bounded by the size the header
implies (itself bounded by the side limit), so a decompression bomb costs at most a few megabytes.
"""

from __future__ import annotations

import struct
import zlib

from edgemnist.errors import SchemaError

__all__ = ["MAX_IMAGE_SIDE", "MAX_RAW_BYTES", "PNG_SIGNATURE", "check_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Camera frames are 28x28; a frame from a PNG folder may be larger.
MAX_IMAGE_SIDE = 1024


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

    Reads the header first, verifies every chunk's CRC, requires IHDR first, PLTE for palette
    images, IDAT and IEND, then inflates the IDAT stream with zlib, bounded by the size the header
    implies, and checks it holds exactly that many bytes with a valid filter type on every row.

    >>> check_png(b"GIF89a", "images[0]")
    Traceback (most recent call last):
    edgemnist.errors.SchemaError: images[0] is not a PNG (bad signature)
    >>> bomb = PNG_SIGNATURE + struct.pack(">I4sIIBBBBB", 13, b"IHDR", 20000, 20000, 1, 0, 0, 0, 0)
    >>> check_png(bomb + bytes(4), "the body")
    Traceback (most recent call last):
    edgemnist.errors.SchemaError: the body is a 20000x20000 PNG; each side must be 1..1024 pixels
    """
    if not data.startswith(PNG_SIGNATURE):
        raise SchemaError(f"{what} is not a PNG (bad signature)")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise SchemaError(f"{what} is not a readable PNG (no IHDR header)")
    width, height = struct.unpack(">II", data[16:24])
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise SchemaError(f"{what} is a {width}x{height} PNG; each side must be 1..{MAX_IMAGE_SIDE} pixels")
    bad = _png_problem(data, width, height)
    if bad:
        raise SchemaError(f"{what} is not a readable PNG ({bad})")
    return width, height


def _png_problem(data: bytes, width: int, height: int) -> str | None:
    """What is wrong with a PNG whose signature and size were checked; None when nothing is."""
    depth, colour, compression, filtering, interlace = data[24:29]
    if data[8:12] != b"\x00\x00\x00\x0d" or depth not in _DEPTHS.get(colour, ()):
        return f"bad IHDR: bit depth {depth}, colour type {colour}"
    if compression or filtering or interlace > 1:
        return "bad IHDR: unknown compression, filter or interlace method"
    expected = _raw_size(width, height, depth * _CHANNELS[colour], interlace == 1)
    if expected > MAX_RAW_BYTES:
        return f"image data would inflate to {expected} bytes, more than {MAX_RAW_BYTES}"
    inflate = zlib.decompressobj()
    raw = bytearray()
    pos, end = 8, len(data)
    seen: list[bytes] = []
    while True:
        if pos + 12 > end:
            return "truncated: no IEND chunk"
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        stop = pos + 12 + length
        if length > 2**31 - 1 or stop > end:
            return f"truncated {kind.decode('latin-1')!r} chunk"
        body = data[pos + 8 : stop - 4]
        if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack_from(">I", data, stop - 4)[0]:
            return f"CRC error in {kind.decode('latin-1')!r} chunk"
        if kind == b"IDAT":
            if seen and seen[-1] != b"IDAT" and b"IDAT" in seen:
                return "IDAT chunks are not consecutive"
            try:
                raw += inflate.decompress(body, expected + 1 - len(raw))
            except zlib.error as exc:
                return f"bad image data: {exc}"
            if len(raw) > expected or inflate.unconsumed_tail:
                return "image data is larger than its header says"
        elif kind == b"IEND":
            break
        seen.append(kind)
        pos = stop
    if b"IDAT" not in seen:
        return "no IDAT chunk"
    if colour == 3 and b"PLTE" not in seen:
        return "palette image without PLTE chunk"
    if not inflate.eof or len(raw) != expected:
        return f"image data truncated: {len(raw)} of {expected} bytes"
    if interlace == 0:
        row = 1 + (width * depth * _CHANNELS[colour] + 7) // 8
        if max(raw[::row]) > 4:
            return "unknown row filter type"
    elif max(raw[k] for k in _row_starts(width, height, depth * _CHANNELS[colour])) > 4:
        return "unknown row filter type"
    return None


def _row_starts(width: int, height: int, bits: int) -> list[int]:
    out: list[int] = []
    pos = 0
    for x0, y0, dx, dy in _ADAM7:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w and h:
            row = 1 + (w * bits + 7) // 8
            out += range(pos, pos + h * row, row)
            pos += h * row
    return out
