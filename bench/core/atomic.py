"""Atomic file replacement: a reader never sees a half-written file, and a failure keeps the old one (a
full or read-only folder is a one-line ``BenchError``, ``bench.core.outputs``)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from bench.core.outputs import writing


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a new temporary file beside ``path``; when the block succeeds it replaces ``path``, when it
    fails it is removed.

    Its name is random and created exclusively, so concurrent writers of ``path`` (threads or processes)
    never share one. Unlike ``tempfile.mkstemp`` (mode 0600) it is created with the umask's usual mode.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    with writing(path.parent, path.name):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        try:
            yield temporary
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    with replacing(path) as temporary:
        temporary.write_text(text)
    return path
