"""Output files written atomically: a reader sees the old file or the new one, never half of one.

Each write goes to a temporary file in the target's directory and is renamed over the target
(``os.replace`` is atomic on POSIX). If anything fails before the rename, the temporary file is
removed and the target is untouched.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

from sim.errors import InputError

__all__ = ["write_atomic"]


def write_atomic(path: str | Path, data: str | bytes, *, compress: bool | None = None) -> Path:
    """Write ``data`` to ``path`` atomically; gzip it if ``path`` ends in ``.gz`` (or if asked)."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)  # mtime=0: same input, same bytes
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError("output directory does not exist", source=str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
