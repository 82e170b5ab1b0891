"""An edge run's closing summary as one JSON line in a file: what the demo and the notebooks read.

The edge appends one line per run (`edge-app run --summary PATH`); a reader takes the last one.
A file rather than a log line, so that no reader depends on the wording of a log message.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "edge.summary.jsonl"
>>> read_summary(path) is None
True
>>> write_summary(path, {"camera": "A", "scored": 10})
>>> write_summary(path, {"camera": "A", "scored": 25})
>>> read_summary(path)
{'camera': 'A', 'scored': 25}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgemnist.errors import SchemaError

__all__ = ["write_summary", "read_summary"]


def write_summary(path: str | os.PathLike[str], summary: Mapping[str, Any]) -> None:
    """Append `summary` as one JSON line (one write, so a reader never sees half a line)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(dict(summary), sort_keys=True) + "\n"
    with open(target, "a", encoding="utf-8") as out:
        out.write(line)


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The newest summary in the file; None when there is no file or no line yet (the run has not ended)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        if line.strip():
            try:
                got = json.loads(line)
            except ValueError as exc:
                raise SchemaError(f"run summary file {str(path)!r}: last line is not JSON ({exc})") from exc
            if not isinstance(got, dict):
                raise SchemaError(f"run summary file {str(path)!r}: last line is not a JSON object")
            return got
    return None
