"""Building streamsx Topologies into IBM Streams build archives (BUILD_ARCHIVE context)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from edgemnist.errors import ConfigError

__all__ = ["java_home", "build_archive"]


def java_home() -> str:
    """JAVA_HOME, or the JDK that `java` on PATH belongs to; ConfigError when there is none."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if java is None:
        raise ConfigError("building a Streams archive needs Java 11+: set JAVA_HOME or put java on PATH")
    return str(Path(java).resolve().parent.parent)


def build_archive(topo: Any, out_dir: Path, name: str | None = None) -> Path:
    """Submit `topo` to streamsx's BUILD_ARCHIVE context and move the archive to `out_dir/<name>.zip`."""
    from streamsx.topology import context

    os.environ["JAVA_HOME"] = java_home()
    result = context.submit(context.ContextTypes.BUILD_ARCHIVE, topo, {})
    path = result["archivePath"] if result is not None and "archivePath" in result else None
    if result is None or result.return_code != 0 or not path:
        raise ConfigError(f"streamsx BUILD_ARCHIVE failed for {topo.name}: {dict(result or {})}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{name or topo.name}.zip"
    shutil.move(path, dest)
    return dest
