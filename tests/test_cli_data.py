"""`bench data list / fetch / import` on a temporary store, with a local HTTP server for downloads."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from test_store import PAYLOAD, server  # noqa: F401  (the server fixture)
from typer.testing import CliRunner

from bench.cli.data import data_app
from bench.core.errors import DataError

runner = CliRunner()

MANIFEST = """name = "toy"
format = "h5ad"
description = "a toy file"
license = "CC0"
citation = "none"
[[files]]
name = "toy.h5ad"
url = "{url}"
sha256 = "{sha}"
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A project home with one manifest ``toy`` and an empty data store."""
    home = tmp_path / "home"
    (home / "datasets").mkdir(parents=True)
    store = tmp_path / "store"
    monkeypatch.setenv("BENCH_CATALOG", str(home))
    monkeypatch.setenv("BENCH_DATA_DIR", str(store))
    return home, store


def add_manifest(home, url: str, data: bytes = PAYLOAD) -> None:
    (home / "datasets" / "toy.toml").write_text(MANIFEST.format(url=url, sha=hashlib.sha256(data).hexdigest()))


def invoke(*args):
    return runner.invoke(data_app, list(args), env={"COLUMNS": "200"})


def test_fetch_then_list(home, server):  # noqa: F811
    (home_dir, store), (folder, base) = home, server
    (folder / "toy.h5ad").write_bytes(PAYLOAD)
    add_manifest(home_dir, f"{base}/toy.h5ad")
    before = invoke("list")
    assert before.exit_code == 0 and "toy.h5ad" in before.stdout and "missing" in before.stdout
    fetched = invoke("fetch", "toy", "--no-progress")
    assert fetched.exit_code == 0, fetched.output
    assert f"verified: {store / 'toy.h5ad'}" in fetched.stdout
    assert (store / "toy.h5ad").read_bytes() == PAYLOAD
    after = invoke("list")
    row = next(line for line in after.stdout.splitlines() if "toy.h5ad" in line)
    assert row.split() == ["toy.h5ad", "90.0", "KB", "verified"]


def test_list_names_every_manifest_and_file_whole_in_a_log_file():
    from bench.data.manifest import all_manifests

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # into a file: rich's 80 columns
    out = subprocess.run([sys.executable, "-m", "bench", "data", "list"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0 and max(map(len, out.stdout.splitlines()[1:])) <= 80, out.stdout
    words = {word for line in out.stdout.splitlines() for word in line.split()}
    for manifest in all_manifests().values():
        assert manifest.name in words and all(entry.name in words for entry in manifest.files), manifest.name


def test_a_failed_fetch_raises_a_data_error_and_writes_nothing(home, server):  # noqa: F811
    (home_dir, store), (_, base) = home, server
    add_manifest(home_dir, f"{base}/absent.h5ad")
    result = invoke("fetch", "toy", "--no-progress")
    assert isinstance(result.exception, DataError) and "HTTP 404" in str(result.exception)
    assert not store.exists() or list(store.iterdir()) == []


def test_import_checks_the_checksum(home, tmp_path):
    home_dir, store = home
    add_manifest(home_dir, "")
    good, wrong = tmp_path / "good.h5ad", tmp_path / "wrong.h5ad"
    good.write_bytes(PAYLOAD)
    wrong.write_bytes(b"wrong")
    refused = invoke("import", "toy", str(wrong))
    assert isinstance(refused.exception, DataError) and "nothing was written" in str(refused.exception)
    assert not (store / "toy.h5ad").exists()
    imported = invoke("import", "toy", str(good))
    assert imported.exit_code == 0 and "verified" in imported.stdout
    assert (store / "toy.h5ad").read_bytes() == PAYLOAD


def test_synthetic_has_nothing_to_fetch():
    result = invoke("fetch", "synthetic")
    assert result.exit_code == 0 and "nothing to fetch" in result.stdout


@pytest.mark.parametrize("command", [[], ["list"], ["fetch"], ["import"], ["path"]])
def test_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_user_errors_are_one_line_with_exit_code_2(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench", "data", "import", "norman_subset", str(tmp_path / "absent.h5ad")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "is not a file" in lines[0]


def test_importing_a_file_of_a_several_file_manifest_without_its_role_names_the_roles(tmp_path):
    """The fix is a --role, not an edit of the package's manifest."""
    file = tmp_path / "gene2go_human.gz"
    file.write_bytes(b"not really")
    out = subprocess.run([sys.executable, "-m", "bench", "data", "import", "gene_ontology", str(file)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "BENCH_DATA_DIR": str(tmp_path / "store")})
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "--role gene2go (gene2go_human.gz), --role gene_info (Homo_sapiens.gene_info.gz)" in lines[0]
    assert ".toml" not in lines[0] and not list(tmp_path.glob("store/**/*.gz"))  # nothing imported
