"""A non-editable install (``pip install .``) works from any folder: the catalog ships with the package."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import real_data_file

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project installed with ``pip install --target`` from a copy of its sources (so nothing is
    written into the checkout); its dependencies are this environment's."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "bench", source / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site-packages")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                          str(source)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return target


def bench(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'runs.db'}",
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.mark.slow
def test_the_installed_package_finds_its_catalog_from_another_folder(installed, tmp_path):
    out = bench(installed, tmp_path, "list", "models")
    assert out.returncode == 0, out.stderr
    assert "scbig_pca_latent" in out.stdout and "linear" in out.stdout
    where = subprocess.run([sys.executable, "-c", "import bench.core.paths as p; print(p.catalog_dir())"],
                           capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)})
    assert Path(where.stdout.strip()) == installed / "bench" / "catalog"
    assert (installed / "bench" / "catalog" / "timings.csv").is_file()  # the run-time estimates ship too


@pytest.mark.slow
def test_the_installed_package_runs_on_its_frozen_splits(installed, tmp_path):
    real_data_file("perturbench_devel.h5ad")
    out = bench(installed, tmp_path, "run", "--model", "mean", "--dataset", "norman_subset", "--split", "simulation")
    assert out.returncode == 0, out.stderr
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs.db'}")
    runs = mlflow.search_runs(experiment_names=["bench/norman_subset"])
    shipped = installed / "bench" / "catalog" / "splits" / "norman_subset" / "simulation-seed1.json"
    assert sorted(runs["tags.model"]) == ["ceiling", "mean"]
    assert set(runs["tags.split_sha256"]) == {hashlib.sha256(shipped.read_bytes()).hexdigest()}


@pytest.mark.slow
def test_the_installed_reference_is_read_but_never_rewritten(installed, tmp_path):
    reference = installed / "bench" / "catalog" / "reference.csv"
    before = reference.read_bytes()
    out = bench(installed, tmp_path, "check", "--update")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "belongs to the installed package" in lines[0], out.stderr
    assert reference.read_bytes() == before
