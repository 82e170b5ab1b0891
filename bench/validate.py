"""CPU µs per message of the hub's validation (`Validator.items`) and of its parts, on one core.

A micro-benchmark, no Kafka and no store: 1,000 uncertain images (about 2.2 KB, a 112-byte
PNG and 784 prepared pixels each) and 1,000 metrics windows, as edges write them (compact
JSON) and as `bench/hub.py` fills its topics (`json.dumps`, with spaces), each batch
validated `--repeat` times; the least and the median process CPU time per message are
printed (CPU time, so other jobs on the machine move it less than wall time). The parts are
timed the same way, one call per message: the compiled pass (`fast_decode`, for an image
including the 784 pixels), the PNG check (base64 and `check_png`) and the row build.
`--store` adds the rest of the work the hub and the honest Quix peer share per image: the
content hash (sha256 of the record) and `Store.write_items` of 1,000-image batches (new ids
each time) on a SQLite file in a temporary directory, with its camera health fold.

    .venv/bin/python bench/validate.py [--repeat 30] [--store]
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgemnist.png import check_png  # noqa: E402
from edgemnist.testing.fakes import records  # noqa: E402
from edgemnist.wire.fast import fast_decode  # noqa: E402
from edgemnist.wire.messages import FUTURE_TOLERANCE  # noqa: E402
from metro_app.ingest.validate import Validator  # noqa: E402
from metro_app.samples import make_image, make_metrics  # noqa: E402
from metro_app.store.items import Item, image_item, metrics_item  # noqa: E402


def cpu_us(
    fn: Callable[[Any], Any], xs: Sequence[Any], repeat: int, *, batch: bool = False
) -> tuple[float, float]:
    """(least, median) process CPU µs per element of `fn` over `xs` (one call per batch or per element)."""
    times = []
    for _ in range(repeat):
        t = time.process_time()
        if batch:
            fn(xs)
        else:
            for x in xs:
                fn(x)
        times.append((time.process_time() - t) / len(xs) * 1e6)
    return min(times), statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument(
        "--store", action="store_true", help="also the content hash and Store.write_items (SQLite)"
    )
    args = p.parse_args(argv)
    images = records([make_image(f"cam{i % 10}", i).to_json() for i in range(1000)])
    windows = records([make_metrics(f"cam{i % 10}", i).to_json() for i in range(1000)])
    validator = Validator()
    spaced_images = records(
        [json.dumps(make_image(f"cam{i % 10}", i).to_dict()).encode() for i in range(1000)]
    )
    spaced_windows = records(
        [json.dumps(make_metrics(f"cam{i % 10}", i).to_dict()).encode() for i in range(1000)]
    )
    got = [*validator.items(images), *validator.items(windows), *validator.items(spaced_images),
           *validator.items(spaced_windows)]  # fmt: skip
    assert all(type(g) is Item for g in got), "every sample message is valid"
    latest = datetime.now(UTC) + FUTURE_TOLERANCE
    image_structs = [fast_decode(r.value, latest) for r in images]
    window_structs = [(fast_decode(r.value, latest), r.value) for r in windows]
    rows = [
        ("images: Validator.items", cpu_us(validator.items, images, args.repeat, batch=True)),
        ("  the same, json.dumps", cpu_us(validator.items, spaced_images, args.repeat, batch=True)),
        ("  compiled pass", cpu_us(lambda r: fast_decode(r.value, latest), images, args.repeat)),
        ("  PNG check", cpu_us(lambda m: check_png(binascii.a2b_base64(m.image, strict_mode=True)), image_structs, args.repeat)),
        ("  row build", cpu_us(image_item, image_structs, args.repeat)),
        ("metrics: Validator.items", cpu_us(validator.items, windows, args.repeat, batch=True)),
        ("  the same, json.dumps", cpu_us(validator.items, spaced_windows, args.repeat, batch=True)),
        ("  compiled pass", cpu_us(lambda r: fast_decode(r.value, latest), windows, args.repeat)),
        ("  row build", cpu_us(lambda mv: metrics_item(mv[0], mv[1].decode()), window_structs, args.repeat)),
    ]  # fmt: skip
    if args.store:
        rows += [
            ("images: content hash", cpu_us(lambda r: hashlib.sha256(r.value).hexdigest(), spaced_images, args.repeat)),
            ("images: Store.write_items", store_us(args.repeat)),
        ]  # fmt: skip
    print(f"{'CPU µs per message':28s} {'least':>7s} {'median':>7s}")
    for name, (least, median) in rows:
        print(f"{name:28s} {least:7.2f} {median:7.2f}")


def store_us(repeat: int) -> tuple[float, float]:
    """(least, median) process CPU µs per image of `Store.write_items` on 1,000 new images (SQLite file)."""
    from metro_app.store import Store

    template = make_image("BenchCam", 0).to_dict()
    validator = Validator()
    batches = []
    for k in range(repeat + 1):
        values = [json.dumps({**template, "id": f"BenchCam/v/{k}/{j}"}).encode() for j in range(1000)]
        items = validator.items(records(values))
        for value, item in zip(values, items, strict=True):
            item.content_hash = hashlib.sha256(value).hexdigest()  # type: ignore[union-attr]
        batches.append(items)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/hub.db")
        store.write_items(batches[0])  # type: ignore[arg-type]  # tables and caches warm
        times = []
        for items in batches[1:]:
            t = time.process_time()
            store.write_items(items)  # type: ignore[arg-type]
            times.append((time.process_time() - t) / len(items) * 1e6)
        store.close()
    return min(times), statistics.median(times)


if __name__ == "__main__":
    main()
