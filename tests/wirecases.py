"""Messages and PNGs that depart from what edges send in one way each: the cases on which the hub's
fast checks and the key-by-key checks must decide alike (`tests/unit/edgemnist/test_png.py`,
`tests/unit/edgemnist/wire/test_fast.py`, `tests/unit/metro_app/store/test_items.py`)."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable

from edgemnist import png
from metro_app.samples import make_image


def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def make_png(width: int = 28, height: int = 28, depth: int = 8, colour: int = 0, *, interlace: int = 0,
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


def flip(at: Callable[[bytes], int]) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        k = at(data)
        return data[:k] + bytes([data[k] ^ 1]) + data[k + 1 :]

    return change


PNGS = {
    "camera layout": make_png(),
    "rgb": make_png(colour=2),
    "one pixel": make_png(1, 1),
    "largest side": make_png(1024, 2),
    "16 bit grey": make_png(depth=16),
    "1 bit grey": make_png(depth=1),
    "grey+alpha": make_png(colour=4),
    "rgba": make_png(colour=6),
    "every filter type": make_png(filters=bytes(range(5))),
    "filter type 5": make_png(filters=b"\x00\x05"),
    "filter type 255": make_png(filters=b"\xff"),
    "two IDATs": make_png(idats=2),
    "three IDATs": make_png(idats=3),
    "text chunk before IDAT": make_png(before=chunk(b"tEXt", b"a\x00b")),
    "text chunk after IDAT": make_png(after_idat=chunk(b"tEXt", b"a\x00b")),
    "IDATs apart": (lambda d, k: d[:k] + chunk(b"tEXt", b"a\x00b") + d[k:])(
        make_png(idats=2), make_png(idats=2).rindex(b"IDAT") - 4
    ),
    "data after IEND": make_png(tail=b"junk"),
    "data after the zlib stream": make_png(stream_tail=b"junk"),
    "a row short": make_png(rows=27),
    "a row more": make_png(rows=29),
    "wider than the data": make_png(29, 28, rows=28),
    "zero width": make_png(0, 28),
    "too wide": make_png(1025, 1),
    "interlaced": make_png(interlace=1),
    "unknown interlace": make_png(interlace=2),
    "palette without PLTE": make_png(colour=3),
    "palette with PLTE": make_png(colour=3, before=chunk(b"PLTE", bytes(768))),
    "bad depth": make_png(depth=3),
    "bad colour type": make_png(colour=5),
    "truncated": make_png()[:-1],
    "no IEND": make_png()[:-12],
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


PREPARED_TEXT = json.dumps(make_image("Cam", 2).to_dict()["prepared_image"], separators=(",", ":"))


def with_prepared(text: str) -> bytes:
    """An image message whose prepared_image is exactly `text` (the rest as an edge writes it)."""
    d = make_image("Cam", 2).to_dict()
    d["prepared_image"] = "@PREPARED@"
    return json.dumps(d, separators=(",", ":")).replace('"@PREPARED@"', text).encode()


def _rows(change) -> str:
    rows = json.loads(PREPARED_TEXT)
    change(rows)
    return json.dumps(rows, separators=(",", ":"))


def _set(value, row=3, col=5):
    return lambda rows: rows[row].__setitem__(col, value)


PREPARED = {
    "as sent": PREPARED_TEXT,
    "255": _rows(_set(255)),
    "256": _rows(_set(256)),
    "1000": _rows(_set(1000)),
    "-1": _rows(_set(-1)),
    "1.0": _rows(_set(1.0)),
    "true": _rows(_set(True)),
    "null": _rows(_set(None)),
    "a string": _rows(_set("7")),
    "a nested list": _rows(_set([1])),
    "2**64": _rows(_set(2**64)),
    "10**30": _rows(_set(10**30)),
    "27 rows": _rows(lambda rows: rows.pop()),
    "29 rows": _rows(lambda rows: rows.append([0] * 28)),
    "27 columns": _rows(lambda rows: rows[4].pop()),
    "29 columns": _rows(lambda rows: rows[4].append(0)),
    "a row of 784": _rows(lambda rows: rows.__setitem__(slice(None), [sum(rows, [])])),
    "all zeros": _rows(lambda rows: [row.__setitem__(slice(None), [0] * 28) for row in rows]),
    "all 255": _rows(lambda rows: [row.__setitem__(slice(None), [255] * 28) for row in rows]),
    "all 256": _rows(lambda rows: [row.__setitem__(slice(None), [256] * 28) for row in rows]),
    "only the first pixel": _rows(
        lambda rows: [
            row.__setitem__(slice(None), [7] + [0] * 27 if row is rows[0] else [0] * 28) for row in rows
        ]
    ),
    "only the last pixel, 10": _rows(
        lambda rows: [
            row.__setitem__(slice(None), [0] * 27 + [10] if row is rows[-1] else [0] * 28) for row in rows
        ]
    ),
    "last pixel 100": _rows(_set(100, 27, 27)),
    "last pixel 250": _rows(_set(250, 27, 27)),
    "last pixel 0, one before 200": _rows(_set(200, 27, 26)),
    "first pixel 255": _rows(_set(255, 0, 0)),
    "first pixel 300": _rows(_set(300, 0, 0)),
    "last pixel 300": _rows(_set(300, 27, 27)),
    "not a list": '"0"',
    "an object": '{"0":0}',
    "spaces": PREPARED_TEXT.replace(",", ", "),
    "a newline": PREPARED_TEXT.replace("],[", "],\n[", 1),
    "json.dumps": json.dumps(json.loads(PREPARED_TEXT)),
    "every whitespace": PREPARED_TEXT.replace("[", "[ \t").replace("]", "\r\n]").replace(",", " ,"),
    "a non-JSON space": PREPARED_TEXT.replace(",", ",\u00a0", 1),
    "a form feed": PREPARED_TEXT.replace(",", ",\f", 1),
    "-0": PREPARED_TEXT.replace("[0,", "[-0,", 1),
    "0e0": PREPARED_TEXT.replace("[0,", "[0e0,", 1),
    "1E2": PREPARED_TEXT.replace("[0,", "[1E2,", 1),
    "leading zero": PREPARED_TEXT.replace("[0,", "[00,", 1),
    "007": PREPARED_TEXT.replace("[0,", "[007,", 1),
    "trailing comma": PREPARED_TEXT[:-2] + ",]]",
    "empty": "[]",
}
