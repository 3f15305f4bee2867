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
