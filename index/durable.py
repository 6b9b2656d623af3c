"""Files that replace their predecessor whole and durably: index snapshots and their state.

A reader (the next start, possibly after a crash or a full disk) finds either the old file
or the new one, never a part of the new; a write that fails leaves no temporary behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A binary file that takes ``path``'s place once the block ends without error.

    It is written beside ``path``, flushed and ``fsync``-ed, then renamed over it; when the
    block or the write fails it is removed and the error raised. The rename is made durable
    by :func:`fsync_directory` of ``path.parent``, which is the caller's to call (once for
    several files).
    """
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries (a file renamed in or removed) durable now; platforms
    that cannot open directories skip it."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


__all__ = ["fsync_directory", "replacing"]
