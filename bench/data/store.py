"""The data store: a flat folder holding the files that dataset manifests name, checked by sha256.

The store (``BENCH_DATA_DIR``, else a per-user data folder) may be read-only, e.g. a shared copy: it is
written only by ``fetch`` and ``import_file``, always atomically. Verification records live in the cache
directory, so a large file is hashed once, not on every load.

A record holds a file's sha256 with its size, mtime, inode number and ctime, and is reused only while
all four are unchanged. Size and mtime alone can be restored by hand after an edit (``os.utime``); the
ctime cannot: every write, ``utime`` or ``chmod`` sets it to the current time, and a file replaced by
another gets a new inode. A change within the same timestamp tick as the record (milliseconds at most;
none on filesystems with fine-grained timestamps) would go unseen, which no hand edit can achieve.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from bench.core import atomic, paths
from bench.core.errors import BenchWarning, DataError
from bench.data.download import ChecksumError, NotWritable, copy_file, download
from bench.data.manifest import DatasetManifest, ManifestFile

VERIFIED = "verified"
UNVERIFIED = "unverified"
CHANGED = "changed"
MISMATCH = "mismatch"
MISSING = "missing"
RECORDS = "verified-files.json"
_warned: set[tuple[str, str]] = set()


class DataWarning(BenchWarning):
    """A data file was accepted although it differs from its manifest (a mutable source changed)."""


@dataclass(frozen=True)
class FileStatus:
    """One manifest file in the store.

    ``state``: ``verified`` (matches the pinned sha256), ``unverified`` (no sha256 pinned), ``changed``
    (a mutable file that differs from the pinned sha256: accepted), ``mismatch`` or ``missing``.
    """

    entry: ManifestFile
    path: Path
    state: str
    size: int | None = None
    sha256: str = ""

    @property
    def present(self) -> bool:
        return self.state != MISSING

    @property
    def usable(self) -> bool:
        return self.state in (VERIFIED, UNVERIFIED, CHANGED)


def _records_path() -> Path:
    return paths.cache_dir() / RECORDS


def _read_records() -> dict:
    try:
        return json.loads(_records_path().read_text())
    except (OSError, ValueError):
        return {}


def _key(path: Path) -> tuple[str, dict]:
    stat = path.stat()
    identity = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino, "ctime_ns": stat.st_ctime_ns}
    return str(path.resolve()), identity


def remember(path: Path, sha256: str) -> None:
    """Record ``path``'s sha256 for its current identity (best effort: the records are a cache)."""
    key, identity = _key(path)
    records = _read_records()
    records[key] = {**identity, "sha256": sha256}
    with contextlib.suppress(OSError):
        atomic.write_text(_records_path(), json.dumps(records, indent=0, sort_keys=True))


def file_sha256(path: Path) -> str:
    """The sha256 of ``path``, from the verification records when its identity is unchanged."""
    key, identity = _key(path)
    record = _read_records().get(key)
    if record and all(record.get(k) == v for k, v in identity.items()):
        return record["sha256"]
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); check its permissions") from None
    remember(path, digest.hexdigest())
    return digest.hexdigest()


class DataStore:
    """The files of dataset manifests in one folder, named by the manifests' file names."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @classmethod
    def default(cls) -> DataStore:
        return cls(paths.data_dir())

    def path(self, entry: ManifestFile) -> Path:
        return self.root / entry.name

    def has(self, manifest: DatasetManifest) -> bool:
        """Whether every file of ``manifest`` is present (not checked: cheap)."""
        return bool(manifest.files) and all(self.path(entry).is_file() for entry in manifest.files)

    def file_status(self, entry: ManifestFile) -> FileStatus:
        path = self.path(entry)
        if not path.is_file():
            return FileStatus(entry, path, MISSING)
        size = path.stat().st_size
        if entry.size is not None and size != entry.size and not entry.mutable:
            return FileStatus(entry, path, MISMATCH, size)
        sha = file_sha256(path)
        if not entry.sha256:
            state = UNVERIFIED
        elif sha == entry.sha256.lower():
            state = VERIFIED
        else:
            state = CHANGED if entry.mutable else MISMATCH
        return FileStatus(entry, path, state, size, sha)

    def status(self, manifest: DatasetManifest) -> list[FileStatus]:
        return [self.file_status(entry) for entry in manifest.files]

    @staticmethod
    def _import_command(manifest: DatasetManifest, entry: ManifestFile) -> str:
        role = f" --role {entry.role}" if len(manifest.files) > 1 else ""
        return f"`bench data import {manifest.name} FILE{role}`"

    def _remedy(self, manifest: DatasetManifest, entry: ManifestFile) -> str:
        imported = self._import_command(manifest, entry)
        if entry.url:
            return f"run `bench data fetch {manifest.name}`, or {imported} with a downloaded copy"
        return f"it has no public download: run {imported} with your copy"

    def require(self, manifest: DatasetManifest, role: str = "data") -> Path:
        """The path of ``manifest``'s file of ``role``, present and verified; else a one-line DataError."""
        entry = manifest.file(role)
        status = self.file_status(entry)
        if status.state == MISSING:
            raise DataError(
                f"dataset '{manifest.name}' needs {entry.name}, which is not in the data store {self.root}; "
                + self._remedy(manifest, entry)
            )
        if status.state == MISMATCH:
            expected = f"sha256 {entry.sha256[:16]}..." if status.sha256 else f"{entry.size:,} bytes"
            found = f"sha256 {status.sha256[:16]}..." if status.sha256 else f"{status.size:,} bytes"
            raise DataError(
                f"{status.path} does not match the manifest of '{manifest.name}' ({found}, expected {expected}); "
                + self._remedy(manifest, entry)
            )
        if status.state == CHANGED:
            _warn_changed(manifest, status)
        return status.path

    def fetch(self, manifest: DatasetManifest, progress: bool = True, force: bool = False) -> list[FileStatus]:
        """Download every file of ``manifest`` that is missing or bad (``force``: every file)."""
        for entry in manifest.files:
            current = self.file_status(entry)
            if current.usable and not force:
                continue
            if not entry.url:
                raise DataError(
                    f"cannot fetch '{manifest.name}': {entry.name} ({current.state}) has no public download; "
                    f"run {self._import_command(manifest, entry)} with your copy"
                )
            kept = ", the existing file is unchanged" if current.present else ""
            try:
                sha = download(
                    entry.url,
                    current.path,
                    expected_sha256=entry.sha256,
                    expected_size=entry.size,
                    archive_member=entry.archive_member,
                    accept_mismatch=entry.mutable,
                    progress=progress,
                )
            except NotWritable as exc:
                raise DataError(f"fetch {manifest.name}: {exc}") from None
            except DataError as exc:
                raise DataError(
                    f"fetch {manifest.name}: {exc}; nothing was written{kept} "
                    f"(retry, or download it yourself and run {self._import_command(manifest, entry)})"
                ) from None
            remember(current.path, sha)
            self._note_changed(manifest, entry)
        return self.status(manifest)

    def import_file(self, manifest: DatasetManifest, file: Path | str, role: str = "data") -> FileStatus:
        """Copy ``file`` (or the manifest's archive member of it) into the store, checked, atomically."""
        entry = manifest.file(role)
        source = Path(file).expanduser()
        destination = self.path(entry)
        if not source.is_file():
            raise DataError(f"cannot import '{manifest.name}': {source} is not a file")
        if destination.exists() and source.resolve() == destination.resolve():
            self.require(manifest, role)
            return self.file_status(entry)
        try:
            sha = copy_file(
                source,
                destination,
                expected_sha256=entry.sha256,
                expected_size=entry.size,
                archive_member=entry.archive_member,
                accept_mismatch=entry.mutable,
            )
        except NotWritable as exc:
            raise DataError(f"import {manifest.name}: {exc}") from None
        except ChecksumError as exc:
            raise DataError(
                f"import {manifest.name}: {exc}; nothing was written (is it the right file for {entry.name}?)"
            ) from None
        except DataError as exc:
            raise DataError(f"import {manifest.name}: {exc}; nothing was written") from None
        except OSError as exc:
            raise DataError(f"import {manifest.name}: cannot read {source} ({exc.strerror or exc})") from None
        remember(destination, sha)
        self._note_changed(manifest, entry)
        return self.file_status(entry)

    def _note_changed(self, manifest: DatasetManifest, entry: ManifestFile) -> None:
        status = self.file_status(entry)
        if status.state == CHANGED:
            _warn_changed(manifest, status)


def _warn_changed(manifest: DatasetManifest, status: FileStatus) -> None:
    """Warn once per process and content that a mutable file differs from its pinned checksum."""
    key = (str(status.path), status.sha256)
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(
        f"{status.entry.name} of '{manifest.name}' differs from the pinned sha256 "
        f"{status.entry.sha256[:16]}... (its source changes over time); accepted, new sha256 {status.sha256}",
        DataWarning,
        stacklevel=3,
    )
