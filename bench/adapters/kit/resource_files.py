"""The user's resource files a run read (gene embeddings, STRING, ESM features, GMT gene sets), each with
its sha256, so that a run says which files its numbers came from (tags ``resource.<file name>``).

``gene_resources`` records every file it opens; the runner takes what one run recorded (``taken``). A
directory of per-gene files (ESM) is one entry: the sha256 of its files' names and sha256s. Hashes are
kept per process by path, size and modification time, so seeds after the first hash nothing again.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

_read: dict[Path, dict[str, str]] = {}  # a file, or a directory, read since ``taken`` -> {member: sha256}


@functools.cache
def _sha256(path: Path, size: int, modified_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record(path: Path, directory: Path | None = None) -> None:
    """Note that ``path`` was read (as a member of ``directory``, for per-gene files)."""
    path = Path(path).resolve()
    stat = path.stat()
    _read.setdefault(directory.resolve() if directory else path, {})[path.name] = _sha256(path, stat.st_size,
                                                                                           stat.st_mtime_ns)


def taken() -> dict[str, str]:
    """The tags of the files read since the last call, which forgets them."""
    tags = {}
    for where, members in _read.items():
        if where.is_dir():
            listing = "".join(f"{name} {sha}\n" for name, sha in sorted(members.items()))
            tags[f"resource.{where.name}"] = hashlib.sha256(listing.encode()).hexdigest()
        else:
            tags[f"resource.{where.name}"] = members[where.name]
    _read.clear()
    return tags
