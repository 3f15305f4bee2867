"""Datasets by name (a manifest, read through the data store) or by path (a generic .h5ad file).

Every dataset comes back canonical, with a sha256 that identifies its data: the source file's, or for
simulated datasets the hash of the simulator's parameters and version. Simulated datasets are made once
and cached as .h5ad under the cache directory, keyed by that hash.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad

from bench.core import atomic, h5ad, paths
from bench.core.errors import DataError
from bench.data.canonical import check_canonical, tidy
from bench.data.loaders import load_h5ad, read_h5ad
from bench.data.manifest import DatasetManifest, all_manifests, find_manifest
from bench.data.store import DataStore, file_sha256

DEFAULT = "norman"
SUBSET = "norman_subset"
SIMULATED = "synthetic"


@dataclass
class Dataset:
    """A canonical dataset: ``adata.uns['bench']`` holds its name and sha256 too. ``with_counts``
    reads the same dataset again with its counts layer (for one loaded without it)."""

    name: str
    adata: ad.AnnData
    sha256: str
    manifest: DatasetManifest | None = None
    with_counts: Callable[[], Dataset] | None = None


def add_counts(adata: ad.AnnData, with_counts: Callable[[], Dataset] | None) -> None:
    """Put the raw counts into ``adata.layers['counts']`` (read again through ``with_counts``) where the
    data has them and the layer is not there yet."""
    if "counts" in adata.layers or with_counts is None:
        return
    counts = with_counts().adata.layers.get("counts")
    if counts is not None:
        adata.layers["counts"] = counts


def is_path(text: str) -> bool:
    """Whether a --dataset value names a file rather than a catalog dataset."""
    return text.endswith(".h5ad") or os.sep in text or Path(text).is_file()


def load_dataset(
    name_or_path: str | Path,
    *,
    perturbation_key: str | None = None,
    control_value: str | None = None,
    cell_type_key: str | None = None,
    gene_symbols_key: str | None = None,
    store: DataStore | None = None,
    counts: bool = True,
) -> Dataset:
    """A dataset by manifest name, or an .h5ad file in the generic format read with the given keys;
    ``counts=False`` leaves out the raw counts (``layers['counts']``), which only some models read: the
    dataset's ``with_counts`` reads them when one does."""
    again = None if counts else functools.partial(
        load_dataset, name_or_path, perturbation_key=perturbation_key, control_value=control_value,
        cell_type_key=cell_type_key, gene_symbols_key=gene_symbols_key, store=store)
    given = {
        ("perturbation", "--perturbation-key"): perturbation_key,
        ("control", "--control-value"): control_value,
        ("cell_type", "--cell-type-key"): cell_type_key,
        ("gene_symbols", "--gene-symbols-key"): gene_symbols_key,
    }
    given = {names: value for names, value in given.items() if value is not None}
    keys = {key: value for (key, _), value in given.items()}
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or is_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise DataError(f"dataset file {path} does not exist; give an .h5ad path or a name from `bench data list`")
        return _finish(path.stem, load_h5ad(path, "h5ad", keys, counts), file_sha256(path), None, again)
    manifest = find_manifest(text)
    if keys:
        options = ", ".join(option for _, option in given)
        verb = "apply" if len(given) > 1 else "applies"
        raise DataError(f"{options} {verb} to .h5ad paths only; dataset '{text}' sets its keys in {manifest.path}")
    if manifest.kind != "dataset":
        raise DataError(f"'{text}' is a {manifest.kind}, not a perturbation dataset; see `bench data list`")
    if manifest.format == "synthetic":
        adata, sha = simulated(manifest, counts)
        return _finish(manifest.name, adata, sha, manifest, again)
    store = store or DataStore.default()
    path = store.require(manifest)
    adata = load_h5ad(path, manifest.format, manifest.keys, counts)
    return _finish(manifest.name, adata, file_sha256(path), manifest, again)


def _finish(name: str, adata: ad.AnnData, sha256: str, manifest: DatasetManifest | None,
            with_counts: Callable[[], Dataset] | None) -> Dataset:
    adata.uns["bench"] = {"dataset": name, "sha256": sha256}
    return Dataset(name, adata, sha256, manifest, with_counts)


def simulator_sha256(params: dict) -> str:
    """The identity of a simulated dataset: its simulator parameters and the simulator's version."""
    from bench.data import simulator

    version = simulator.VERSION
    payload = json.dumps({"simulator": version, "params": params}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def simulated(manifest: DatasetManifest, counts: bool = True) -> tuple[ad.AnnData, str]:
    """The simulated dataset of a ``synthetic`` manifest, from the cache or made now (and cached)."""
    from bench.data.simulator import simulate

    sha = simulator_sha256(manifest.simulator)
    cached = paths.cache_dir() / "synthetic" / f"{sha}.h5ad"
    if cached.is_file():
        return tidy(read_h5ad(cached, layers=counts)), sha
    adata = tidy(simulate(**manifest.simulator))
    check_canonical(adata, f"dataset '{manifest.name}'")
    _write_cache(adata, cached)
    if not counts:
        del adata.layers["counts"]
    return adata, sha


def _write_cache(adata: ad.AnnData, path: Path) -> None:
    """Write ``path`` atomically; a cache that cannot be written only costs time, so it warns."""
    try:
        with atomic.replacing(path) as temporary:
            h5ad.write(temporary, adata)
    except (OSError, TypeError, ValueError) as exc:
        warnings.warn(f"could not cache the simulated dataset at {path} ({exc})", stacklevel=3)


def default_dataset(store: DataStore | None = None) -> tuple[str, str]:
    """The dataset ``bench run`` uses without ``--dataset``, and a one-line note saying which and why."""
    store = store or DataStore.default()
    manifests = all_manifests()
    if DEFAULT in manifests and store.has(manifests[DEFAULT]):
        return DEFAULT, f"dataset: {DEFAULT} (Norman et al. 2019, found in the data store)"
    fetch = f"`bench data fetch {DEFAULT}`"
    if SUBSET in manifests and store.has(manifests[SUBSET]):
        return SUBSET, f"dataset: {SUBSET} (the full Norman data is not in the data store; {fetch} gets it)"
    return SIMULATED, f"dataset: {SIMULATED} (simulated: no Norman data in the data store; {fetch} gets it)"
