"""Files replaced whole or not at all, so a reader never sees half a model or job file.

The data goes to a hidden temporary file beside the target, which
`os.replace` then renames over it: a crash leaves the old file or the new
one, never a mix.

>>> import tempfile
>>> from pathlib import Path
>>> target = Path(tempfile.mkdtemp()) / "card.json"
>>> write_atomic(target, b"{}")
>>> target.read_bytes(), sorted(p.name for p in target.parent.iterdir())
(b'{}', ['card.json'])
>>> write_atomic(target, b"secret", mode=0o600)
>>> oct(target.stat().st_mode & 0o777)
'0o600'
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` in one rename.

    Args:
        path: the file to write; its folder must exist.
        data: the whole new content.
        mode: permission bits for a file not everyone may read (0o600 for one
            holding passwords); the temporary file has them from its creation,
            so the data is never readable by others in between.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    if mode is None:
        tmp.write_bytes(data)
    else:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with open(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
    os.replace(tmp, path)
