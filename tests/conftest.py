"""Shared fixtures. Real data is reached only through the data store (``BENCH_DATA_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import paths


def real_data_file(name: str) -> Path:
    """A file from the data store; skip locally when absent, fail in CI (``CI`` set)."""
    path = paths.data_dir() / name
    if path.exists():
        return path
    message = f"real data file {name} not in the data store {paths.data_dir()} (set BENCH_DATA_DIR)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache directory, so tests never read a stale user cache."""
    if "BENCH_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "bench-cache"))


@pytest.fixture(scope="session")
def norman_subset():
    """The real norman_subset dataset, loaded through the data store (canonical AnnData)."""
    real_data_file("perturbench_devel.h5ad")
    from bench.data.datasets import load_dataset

    return load_dataset("norman_subset")


@pytest.fixture(scope="session")
def small_synthetic():
    """A small simulated screen (a few hundred cells), canonical AnnData with ground truth in uns."""
    from bench.data.simulator import simulate

    return simulate(n_cells=900, n_genes=120, n_modules=6, n_singles=10, n_doubles=12, seed=7)
