"""Hostile inputs for tests and benchmarks: small files that claim or inflate to huge images."""

from __future__ import annotations

import struct
import zlib

__all__ = ["bomb_png"]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def bomb_png(side: int, bits: int = 1) -> bytes:
    """A valid all-black greyscale PNG of `side` x `side` pixels; at 1 bit, 20000 px a side is ~48 KB.

    >>> len(bomb_png(20000)) < 60_000
    True
    """
    row = b"\x00" + bytes((side * bits + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, bits, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
