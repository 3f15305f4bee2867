"""Reading the text files users download (gene tables, knowledge graphs, gene sets), with one-line errors.

Compression is told by the first bytes, not by the file name: pandas' ``compression="infer"`` goes by the
suffix (a gzip file without ``.gz`` fails to parse) and refuses a zip archive of several members.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from pathlib import Path
from typing import TextIO

# What a damaged, truncated or mislabelled file raises while read (ValueError covers UnicodeDecodeError
# and pandas' ParserError).
READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, ValueError)


def one_line(text: object, limit: int | None = None) -> str:
    """``str(text)`` (an exception or a message) on one line, at most ``limit`` characters."""
    return " ".join(str(text).split())[:limit]


def existing(path: str | Path, what: str, error_cls: type[Exception], fix: str = "check the path") -> Path:
    """``path`` as a Path if it is a file, else ``error_cls("<what> <path> does not exist; <fix>")``."""
    path = Path(path)
    if not path.is_file():
        raise error_cls(f"{what} {path} does not exist; {fix}")
    return path


def compression(path: Path) -> str | None:
    """"gzip", "zip" or None (plain), told by the first bytes (zip: a local file header or, for an empty
    archive, the end of its central directory)."""
    with open(path, "rb") as handle:
        start = handle.read(4)
    if start[:2] == b"\x1f\x8b":
        return "gzip"
    return "zip" if start in (b"PK\x03\x04", b"PK\x05\x06") else None


def open_text(path: Path) -> TextIO:
    """``path`` opened for reading UTF-8 text, gunzipped if it is gzip (zip archives: see ``zipfile``)."""
    return (gzip.open if compression(path) == "gzip" else open)(path, "rt", encoding="utf-8")
