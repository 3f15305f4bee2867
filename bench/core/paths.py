"""Where things live: the catalog shipped with the package, the user's own cards, the data store, the cache.

The catalog (``bench/catalog/``, installed with the package) holds the model cards (``models/``), the
dataset manifests (``datasets/``), the frozen splits (``splits/<dataset>/``) and the reference of ``bench check``
(``reference.csv``). ``BENCH_CATALOG`` replaces it with a folder of the same layout. ``BENCH_CARDS_DIR``
holds the user's own model cards, read beside the catalog's: ``bench sweep`` writes tuned cards there
(default: a per-user configuration folder), never into the package. ``BENCH_DATA_DIR`` is the data
store (default: a per-user data folder); ``BENCH_CACHE_DIR`` the cache of derived files (DE genes,
simulated datasets, splits of ad-hoc datasets). ``BENCH_ENVS_DIR`` holds the virtual environments of models
that cannot share bench's own (default: ``environments/`` in the per-user data folder; never the data store,
which may be a read-only shared copy), built from the pinned requirements files of the catalog's
``environments/``. ``BENCH_CONFIG`` names the user's configuration file
(default: ``config.toml`` in the per-user configuration folder), whose ``[slurm]`` table sets the
resources of ``--executor slurm``.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from bench.core.errors import BenchError
from bench.core.outputs import writing

PACKAGE = Path(__file__).resolve().parent.parent  # bench/, which holds catalog/ and templates/


def catalog_dir() -> Path:
    catalog = os.environ.get("BENCH_CATALOG")
    if not catalog:
        return PACKAGE / "catalog"
    if not Path(catalog).is_dir():
        raise BenchError(f"BENCH_CATALOG={catalog} is not a folder; point it at a catalog (with models/, datasets/, "
                         "splits/) or unset it")
    return Path(catalog)


def models_dir() -> Path:
    return catalog_dir() / "models"


def user_cards_dir() -> Path:
    cards = os.environ.get("BENCH_CARDS_DIR")
    return Path(cards).expanduser() if cards else Path(platformdirs.user_config_dir("bench")) / "cards"


def config_file() -> Path:
    config = os.environ.get("BENCH_CONFIG")
    return Path(config).expanduser() if config else Path(platformdirs.user_config_dir("bench")) / "config.toml"


def card_dirs() -> list[Path]:
    """Where model cards are read from: the catalog's, then the user's."""
    return [models_dir(), user_cards_dir()]


def datasets_dir() -> Path:
    return catalog_dir() / "datasets"


def splits_dir() -> Path:
    return catalog_dir() / "splits"


def requirements_dir() -> Path:
    """The catalog's pinned requirements files of models that run in their own environment."""
    return catalog_dir() / "environments"


def environments_dir() -> Path:
    folder = os.environ.get("BENCH_ENVS_DIR")
    return Path(folder).expanduser() if folder else Path(platformdirs.user_data_dir("bench")) / "environments"


def reference_file() -> Path:
    return catalog_dir() / "reference.csv"


def inside_installed_package(path: Path) -> bool:
    """Whether ``path`` lies inside an installed package (not a source checkout): bench never writes there."""
    return not (PACKAGE.parent / "pyproject.toml").is_file() and path.resolve().is_relative_to(PACKAGE)


def data_dir() -> Path:
    store = os.environ.get("BENCH_DATA_DIR")
    return Path(store) if store else Path(platformdirs.user_data_dir("bench"))


def cache_dir() -> Path:
    cache = os.environ.get("BENCH_CACHE_DIR")
    path = Path(cache) if cache else Path(platformdirs.user_cache_dir("bench"))
    with writing(path.parent, "the cache folder (BENCH_CACHE_DIR)"):
        path.mkdir(parents=True, exist_ok=True)
    return path
