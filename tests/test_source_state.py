"""Runs record whether the harness's source differed from its commit, and `bench check --update` refuses
to write a reference from uncommitted changes unless forced."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import bench

from bench.core import paths
from bench.workflows import reference_check, source_state, tracking


def git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repository(tmp_path):
    """A git checkout holding a copy of the bench package, committed."""
    source = tmp_path / "src"
    shutil.copytree(paths.PACKAGE, source / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    git(tmp_path, "init", "-q", str(source))
    git(source, "add", ".")
    git(source, "commit", "-q", "-m", "copy")
    return source


def state(folder):
    source_state.describe.cache_clear()
    return source_state.describe(folder)


def test_a_clean_and_an_edited_tree_are_told_apart(repository):
    package = repository / "bench"
    clean = state(package)
    assert clean == {"git_commit": git(repository, "rev-parse", "HEAD"), "git_dirty": "false"}
    errors = package / "core" / "errors.py"
    errors.write_text(errors.read_text() + "# an edit\n")
    edited = state(package)
    assert edited["git_dirty"] == "true" and edited["git_commit"] == clean["git_commit"]
    assert state(package) == edited  # the same edits, the same hash
    (package / "new_module.py").write_text("x = 1\n")
    with_new_file = state(package)
    assert with_new_file["git_diff_sha256"] != edited["git_diff_sha256"]
    (repository / "notes.txt").write_text("outside the package\n")
    assert state(package) == with_new_file


def test_a_folder_outside_git_is_unknown(tmp_path):
    assert state(tmp_path) == {"git_commit": "unknown", "git_dirty": "unknown"}


@pytest.mark.slow
def test_check_update_refuses_uncommitted_source_and_runs_record_it(repository, tmp_path, workdir, monkeypatch):
    env = {**workdir["env"], "PYTHONPATH": str(repository)}
    errors = repository / "bench" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "# an edit\n")
    reference = tmp_path / "reference.csv"
    reference.write_text(",".join(reference_check.COLUMNS) + "\nsynthetic,simulation,mean,default,1,mse,all,,,,,,\n")
    before = reference.read_bytes()
    out = bench("check", "--reference", str(reference), "--update", cwd=tmp_path, env=env)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "has uncommitted changes" in lines[0], out.stderr
    assert "--force" in lines[0] and reference.read_bytes() == before

    out = bench("run", "--model", "mean", "--dataset", "synthetic", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    found = tracking.search_runs("synthetic", "tags.model = 'mean'")
    assert list(found["tags.git_dirty"]) == ["true"] and found["tags.git_diff_sha256"].str.len().tolist() == [64]
    assert list(found["tags.git_commit"]) == [git(repository, "rev-parse", "HEAD")]
