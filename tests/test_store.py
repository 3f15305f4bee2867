"""The data store and downloader, against local files only: a threaded HTTP server and file:// URLs."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import socket
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from bench.core import paths
from bench.core.errors import DataError
from bench.data.manifest import DatasetManifest, ManifestFile
from bench.data.store import DataStore, DataWarning, file_sha256

PAYLOAD = b"perturbation data " * 5000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the files of a folder; ``/truncated`` promises more bytes than it sends."""

    def do_GET(self):
        if self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """``(folder, base_url)``: files written to folder are served at base_url."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = lambda *a, **k: Handler(*a, directory=str(folder), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    return DataStore(root)


def manifest(name: str = "toy", **file) -> DatasetManifest:
    entry = ManifestFile(**{"name": "toy.bin", **file})
    return DatasetManifest(
        name=name, kind="dataset", format="h5ad", description="d", license="l", citation="c", files=(entry,)
    )


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_fetch_downloads_verifies_and_leaves_only_the_file(server, store):
    folder, base = server
    (folder / "toy.bin").write_bytes(PAYLOAD)
    [status] = store.fetch(manifest(url=f"{base}/toy.bin", sha256=sha(PAYLOAD), size=len(PAYLOAD)), progress=False)
    assert status.state == "verified" and status.sha256 == sha(PAYLOAD)
    assert (store.root / "toy.bin").read_bytes() == PAYLOAD
    assert listing(store.root) == ["toy.bin"]


def test_fetch_from_a_file_url(tmp_path, store):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    [status] = store.fetch(manifest(url=source.as_uri(), sha256=sha(PAYLOAD)), progress=False)
    assert status.state == "verified" and listing(store.root) == ["toy.bin"]


def test_checksum_mismatch_leaves_nothing_and_keeps_a_good_file(server, store):
    folder, base = server
    (folder / "toy.bin").write_bytes(b"something else entirely")
    bad = manifest(url=f"{base}/toy.bin", sha256=sha(PAYLOAD))
    with pytest.raises(DataError, match="expected .*nothing was written") as error:
        store.fetch(bad, progress=False)
    assert "\n" not in str(error.value)
    assert listing(store.root) == []
    (store.root / "toy.bin").write_bytes(PAYLOAD)
    with pytest.raises(DataError, match="the existing file is unchanged"):
        store.fetch(bad, progress=False, force=True)
    assert listing(store.root) == ["toy.bin"] and (store.root / "toy.bin").read_bytes() == PAYLOAD


def test_size_mismatch_is_refused(server, store):
    folder, base = server
    (folder / "toy.bin").write_bytes(PAYLOAD)
    with pytest.raises(DataError, match=f"{len(PAYLOAD):,} bytes, expected 12"):
        store.fetch(manifest(url=f"{base}/toy.bin", size=12), progress=False)
    assert listing(store.root) == []


def test_http_404_says_so(server, store):
    _, base = server
    with pytest.raises(DataError, match="HTTP 404.*nothing was written.*bench data import toy FILE"):
        store.fetch(manifest(url=f"{base}/absent.bin"), progress=False)
    assert listing(store.root) == []


def test_connection_refused_says_so(store):
    with pytest.raises(DataError, match="cannot reach http://127.0.0.1"):
        store.fetch(manifest(url=f"http://127.0.0.1:{free_port()}/toy.bin"), progress=False)
    assert listing(store.root) == []


def test_truncated_transfer_leaves_nothing(server, store):
    _, base = server
    with pytest.raises(DataError, match="broke off"):
        store.fetch(manifest(url=f"{base}/truncated"), progress=False)
    assert listing(store.root) == []


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_gz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("pack, suffix", [(zip_bytes, "zip"), (tar_gz_bytes, "tar.gz")])
def test_archive_member_is_extracted_to_the_store_name(server, store, pack, suffix):
    folder, base = server
    members = {"toy/perturb_processed.h5ad": PAYLOAD, "toy/go.csv": b"a,b\n"}
    (folder / f"toy.{suffix}").write_bytes(pack(members))
    entry = {"url": f"{base}/toy.{suffix}", "archive_member": "toy/perturb_processed.h5ad", "sha256": sha(PAYLOAD)}
    [status] = store.fetch(manifest(**entry), progress=False)
    assert status.state == "verified"
    assert listing(store.root) == ["toy.bin"] and (store.root / "toy.bin").read_bytes() == PAYLOAD


def test_missing_archive_member_is_named(server, store):
    folder, base = server
    (folder / "toy.zip").write_bytes(zip_bytes({"other/file.h5ad": PAYLOAD}))
    with pytest.raises(DataError, match="has no member toy/perturb_processed.h5ad .*other/file.h5ad"):
        store.fetch(manifest(url=f"{base}/toy.zip", archive_member="toy/perturb_processed.h5ad"), progress=False)
    assert listing(store.root) == []


def test_a_read_only_store_is_a_clear_error(server, store):
    folder, base = server
    (folder / "toy.bin").write_bytes(PAYLOAD)
    store.root.chmod(0o555)
    try:
        with pytest.raises(DataError, match="cannot write into the data store .*BENCH_DATA_DIR"):
            store.fetch(manifest(url=f"{base}/toy.bin"), progress=False)
        with pytest.raises(DataError, match="cannot write into the data store"):
            store.import_file(manifest(), folder / "toy.bin")
        assert listing(store.root) == []
    finally:
        store.root.chmod(0o755)


def test_status_and_require_never_write_into_the_store(tmp_path, store):
    (store.root / "toy.bin").write_bytes(PAYLOAD)
    store.root.chmod(0o555)
    try:
        good = manifest(sha256=sha(PAYLOAD))
        assert store.require(good) == store.root / "toy.bin"
        assert [s.state for s in store.status(good)] == ["verified"]
        assert listing(store.root) == ["toy.bin"]
    finally:
        store.root.chmod(0o755)


def test_require_explains_what_to_do(store):
    with pytest.raises(DataError, match="needs toy.bin.*`bench data fetch toy`.*`bench data import toy FILE`"):
        store.require(manifest(url="https://example.org/toy.bin"))
    with pytest.raises(DataError, match="no public download: run `bench data import toy FILE`"):
        store.require(manifest())
    (store.root / "toy.bin").write_bytes(b"corrupted")
    with pytest.raises(DataError, match="does not match the manifest of 'toy'"):
        store.require(manifest(sha256=sha(PAYLOAD)))


def test_states(store):
    (store.root / "toy.bin").write_bytes(PAYLOAD)
    assert store.file_status(ManifestFile("toy.bin", sha256=sha(PAYLOAD))).state == "verified"
    assert store.file_status(ManifestFile("toy.bin")).state == "unverified"
    assert store.file_status(ManifestFile("toy.bin", sha256=sha(b"x"))).state == "mismatch"
    assert store.file_status(ManifestFile("toy.bin", size=3)).state == "mismatch"
    assert store.file_status(ManifestFile("toy.bin", sha256=sha(b"x"), mutable=True)).state == "changed"
    assert store.file_status(ManifestFile("absent.bin")).state == "missing"


def test_a_changed_mutable_file_is_accepted_with_a_warning_naming_its_sha(store):
    (store.root / "toy.bin").write_bytes(PAYLOAD)
    with pytest.warns(DataWarning, match=f"new sha256 {sha(PAYLOAD)}"):
        assert store.require(manifest(sha256=sha(b"old release"), mutable=True)) == store.root / "toy.bin"
    with pytest.raises(DataError, match="does not match"):
        store.require(manifest(sha256=sha(b"old release")))


def test_files_are_hashed_once_until_they_change(store):
    path = store.root / "toy.bin"
    path.write_bytes(PAYLOAD)
    assert file_sha256(path) == sha(PAYLOAD)
    records_file = paths.cache_dir() / "verified-files.json"
    records = json.loads(records_file.read_text())
    assert records[str(path.resolve())]["sha256"] == sha(PAYLOAD)
    records[str(path.resolve())]["sha256"] = "recorded"
    records_file.write_text(json.dumps(records))
    assert file_sha256(path) == "recorded"
    path.write_bytes(PAYLOAD + b"!")
    os.utime(path, ns=(1, 1))
    assert file_sha256(path) == sha(PAYLOAD + b"!")


def test_an_edit_in_place_with_its_mtime_restored_is_a_mismatch(tmp_path, store):
    """Size and mtime can be restored by hand (``os.utime``); the inode's ctime cannot."""
    source = tmp_path / "good.bin"
    source.write_bytes(PAYLOAD)
    toy = manifest(sha256=sha(PAYLOAD))
    assert store.import_file(toy, source).state == "verified"
    path = store.root / "toy.bin"
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(100)
        handle.write(b"X")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert store.file_status(toy.files[0]).state == "mismatch"
    with pytest.raises(DataError, match="does not match the manifest of 'toy'"):
        store.require(toy)


def test_import_copies_a_good_file_and_refuses_a_wrong_one(tmp_path, store):
    good, wrong = tmp_path / "good.bin", tmp_path / "wrong.bin"
    good.write_bytes(PAYLOAD)
    wrong.write_bytes(b"not it")
    toy = manifest(sha256=sha(PAYLOAD))
    assert store.import_file(toy, good).state == "verified"
    umask = os.umask(0)
    os.umask(umask)
    assert (store.root / "toy.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(DataError, match="import toy: .*expected.*nothing was written"):
        store.import_file(toy, wrong)
    assert listing(store.root) == ["toy.bin"] and (store.root / "toy.bin").read_bytes() == PAYLOAD
    with pytest.raises(DataError, match="is not a file"):
        store.import_file(toy, tmp_path / "absent.bin")


def test_import_extracts_the_member_of_an_archive(tmp_path, store):
    archive = tmp_path / "download.zip"
    archive.write_bytes(zip_bytes({"toy/perturb_processed.h5ad": PAYLOAD}))
    status = store.import_file(manifest(archive_member="toy/perturb_processed.h5ad", sha256=sha(PAYLOAD)), archive)
    assert status.state == "verified" and (store.root / "toy.bin").read_bytes() == PAYLOAD


def test_an_unpinned_fetch_records_the_sha(server, store):
    folder, base = server
    (folder / "toy.bin").write_bytes(PAYLOAD)
    [status] = store.fetch(manifest(url=f"{base}/toy.bin"), progress=False)
    assert status.state == "unverified" and status.sha256 == sha(PAYLOAD)


def test_fetching_an_import_only_file_says_to_import_it(store):
    with pytest.raises(DataError, match=r"toy.bin \(missing\) has no public download; run `bench data import toy FILE`"):
        store.fetch(manifest(), progress=False)
