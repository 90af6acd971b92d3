"""Output files written atomically: a reader sees the old file or the new one, never half of one.

Each write goes to a temporary file in the target's directory and is renamed over the target
(``os.replace`` is atomic on POSIX). If anything fails before the rename, the temporary file is
removed and the target is untouched.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from sim.errors import InputError

__all__ = ["write_atomic", "atomic_output"]


def _file_mode() -> int:
    """0o666 less the process umask: the mode ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """A binary stream to a temporary file beside ``path``, renamed over ``path`` when the block
    ends without an exception; on an exception the temporary file is removed and ``path`` is
    untouched."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError("output directory does not exist", source=str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes it owner-only; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes, *, compress: bool | None = None) -> Path:
    """Write ``data`` to ``path`` atomically; gzip it if ``path`` ends in ``.gz`` (or if asked)."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)  # mtime=0: same input, same bytes
    with atomic_output(path) as handle:
        handle.write(payload)
    return path
