"""Faults of the disk or folder a command writes to (full, read-only, not permitted, a file where a folder
should be) as a one-line ``BenchError`` that names the folder, instead of a traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.core.errors import BenchError

FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                    errno.EISDIR, errno.EEXIST})


class WriteError(BenchError, OSError):
    """A folder that cannot be written: a ``BenchError`` (one line, exit 2) that is still the ``OSError`` it
    was (same ``errno``), so code that only warns about a cache it cannot write goes on doing so."""

    def __str__(self) -> str:
        return self.args[0]  # the message, not OSError's "[Errno 28] No space left on device"


@contextlib.contextmanager
def writing(folder: Path, what: str) -> Iterator[None]:
    """Turn an ``OSError`` of ``FAULTS`` raised in the block into a ``WriteError``: ``cannot write <what> to
    <folder>: <reason>`` (the outermost block names the folder: one inside it may be a hidden one)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in FAULTS:
            raise
        # EEXIST here is a folder that cannot be made because a file has its name
        reason = os.strerror(errno.ENOTDIR) if exc.errno == errno.EEXIST else exc.strerror or str(exc)
        error = WriteError(f"cannot write {what} to {folder}: {reason}")
        error.errno, error.strerror = exc.errno, reason
        raise error from None


def probe(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder`` (made when missing), so a folder that cannot be written is
    refused before the work whose result goes there."""
    with writing(folder, what):
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=folder, prefix=".probe-")
        os.close(handle)
        os.unlink(name)
