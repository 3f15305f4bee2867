"""Getting bytes into the data store safely: streamed downloads, archive members, atomic writes.

Every write goes to a temporary file in the destination folder, is hashed while it is written, is
checked against the expected sha256, and only then replaces the destination with ``os.replace``. A
failure at any step removes the temporary file, so a store never holds a partial file and an existing
good file is never touched by a failed attempt.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import secrets
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from bench import __version__
from bench.core import atomic
from bench.core.errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 60
USER_AGENT = f"bench/{__version__} (perturbation benchmark data fetch)"


class ChecksumError(DataError):
    """Bytes written do not have the expected sha256 or size."""


class NotWritable(DataError):
    """The destination folder cannot be written (a read-only store)."""


def _chunks(handle: BinaryIO, advance: Callable[[int], object] = lambda n: None) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        advance(len(chunk))
        yield chunk


def _writable(folder: Path) -> None:
    """Create ``folder`` if needed; ``NotWritable`` without write permission, even for root (a store marked
    read-only stays so)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK) or not folder.stat().st_mode & 0o222:
            raise PermissionError(errno.EACCES, "read-only folder")
    except OSError as exc:
        raise NotWritable(
            f"cannot write into the data store {folder} ({exc.strerror or exc}); "
            "set BENCH_DATA_DIR to a writable folder"
        ) from None


@contextmanager
def temporary_file(folder: Path, name: str) -> Iterator[Path]:
    """A fresh temporary path in ``folder`` (created if needed), removed on exit."""
    _writable(folder)
    path = folder / f".{name}.{secrets.token_hex(6)}.part"
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def check(actual_sha256: str, size: int, expected_sha256: str, expected_size: int | None, what: str) -> None:
    """Raise ``ChecksumError`` when the bytes of ``what`` are not the expected ones."""
    if expected_sha256 and actual_sha256 != expected_sha256.lower():
        raise ChecksumError(f"{what} has sha256 {actual_sha256[:16]}..., expected {expected_sha256[:16]}...")
    if expected_size is not None and size != expected_size:
        raise ChecksumError(f"{what} has {size:,} bytes, expected {expected_size:,}")


def write_atomically(
    destination: Path,
    chunks: Iterable[bytes],
    *,
    expected_sha256: str = "",
    expected_size: int | None = None,
    accept_mismatch: bool = False,
    what: str = "",
) -> str:
    """Write ``chunks`` to ``destination`` atomically and return their sha256.

    With ``accept_mismatch`` a checksum or size difference is not an error (mutable sources); the
    caller reports the returned sha256.
    """
    digest = hashlib.sha256()
    size = 0
    _writable(destination.parent)
    with atomic.replacing(destination) as temporary:
        try:
            with open(temporary, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except OSError as exc:
            raise DataError(f"cannot write {destination} ({exc.strerror or exc})") from None
        actual = digest.hexdigest()
        if not accept_mismatch:
            check(actual, size, expected_sha256, expected_size, what or destination.name)
    return actual


def _progress(enabled: bool) -> Progress:
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=True)


def _open_url(url: str):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot reach {url} ({reason})") from None


def _stream(url: str, label: str, progress: bool) -> Iterator[bytes]:
    """The body at ``url``, chunk by chunk; a short or broken transfer is an error."""
    response = _open_url(url)
    with response, _progress(progress) as bar:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        task = bar.add_task(label, total=expected)
        received = 0
        try:
            for chunk in _chunks(response, lambda n: bar.advance(task, n)):
                received += len(chunk)
                yield chunk
        except (http.client.HTTPException, OSError) as exc:
            raise DataError(f"download of {url} broke off after {received:,} bytes ({exc})") from None
        if expected is not None and received != expected:
            raise DataError(f"download of {url} broke off: got {received:,} of {expected:,} bytes")


def member_chunks(archive: Path, member: str, label: str = "") -> Iterator[bytes]:
    """The bytes of ``member`` inside a zip or tar(.gz) ``archive`` (``label`` names it in errors)."""
    label = label or archive.name
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as opened:
                if member not in opened.namelist():
                    raise DataError(_missing_member(label, member, opened.namelist()))
                with opened.open(member) as handle:
                    yield from _chunks(handle)
            return
        with tarfile.open(archive) as opened:
            try:
                handle = opened.extractfile(member)
            except KeyError:
                handle = None
            if handle is None:
                raise DataError(_missing_member(label, member, opened.getnames()))
            with handle:
                yield from _chunks(handle)
    except tarfile.ReadError:
        raise DataError(f"{label} is neither a zip nor a tar archive; cannot extract {member}") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"{label} is a corrupt archive; cannot extract {member} ({exc})") from None


def is_archive(path: Path) -> bool:
    return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)


def _missing_member(label: str, member: str, names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"archive {label} has no member {member} (it has: {shown or 'nothing'})"


def download(
    url: str,
    destination: Path,
    *,
    expected_sha256: str = "",
    expected_size: int | None = None,
    archive_member: str = "",
    accept_mismatch: bool = False,
    progress: bool = True,
) -> str:
    """Download ``url`` (or one member of the archive at ``url``) to ``destination``; return its sha256.

    The checksum and size are those of the final file (the extracted member for archives).
    """
    checks = {"expected_sha256": expected_sha256, "expected_size": expected_size, "accept_mismatch": accept_mismatch}
    if not archive_member:
        return write_atomically(
            destination, _stream(url, destination.name, progress), what=f"the download from {url}", **checks
        )
    with temporary_file(destination.parent, destination.name + ".archive") as archive:
        write_atomically(archive, _stream(url, destination.name, progress))
        return write_atomically(
            destination, member_chunks(archive, archive_member, url), what=f"{archive_member} from {url}", **checks
        )


def copy_file(source: Path, destination: Path, **checks) -> str:
    """Copy ``source`` (or ``checks['archive_member']`` of it, when it is an archive) atomically."""
    member = checks.pop("archive_member", "")
    if member and is_archive(source):
        return write_atomically(destination, member_chunks(source, member), what=f"{member} of {source}", **checks)
    with open(source, "rb") as handle:
        return write_atomically(destination, _chunks(handle), what=str(source), **checks)

