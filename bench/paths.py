"""Where things live: the project's cards, manifests and frozen splits; the data store; the cache.

``BENCH_HOME`` overrides the project root (default: the checkout this package was installed from),
``BENCH_DATA_DIR`` the data store (default: a per-user data directory), ``BENCH_CACHE_DIR`` the cache
of derived files (DE genes, simulated datasets, splits of ad-hoc datasets).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def project_root() -> Path:
    home = os.environ.get("BENCH_HOME")
    return Path(home) if home else Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    return project_root() / "models"


def datasets_dir() -> Path:
    return project_root() / "datasets"


def splits_dir() -> Path:
    return project_root() / "splits"


def data_dir() -> Path:
    store = os.environ.get("BENCH_DATA_DIR")
    return Path(store) if store else Path(platformdirs.user_data_dir("bench"))


def cache_dir() -> Path:
    cache = os.environ.get("BENCH_CACHE_DIR")
    path = Path(cache) if cache else Path(platformdirs.user_cache_dir("bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path
