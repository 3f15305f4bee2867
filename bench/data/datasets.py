"""Datasets by name (a manifest, read through the data store) or by path (a generic .h5ad file).

Every dataset comes back canonical, with a sha256 that identifies its data: the source file's, or for
simulated datasets the hash of the simulator's parameters and version. Simulated datasets are made once
and cached as .h5ad under the cache directory, keyed by that hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import anndata as ad

from bench import atomic, paths
from bench.data.canonical import check_canonical, tidy
from bench.data.loaders import load_h5ad, read_h5ad
from bench.data.manifest import DatasetManifest, all_manifests, find_manifest
from bench.data.store import DataStore, file_sha256
from bench.errors import DataError

DEFAULT = "norman"
SUBSET = "norman_subset"
SIMULATED = "synthetic"


@dataclass
class Dataset:
    """A canonical dataset: ``adata.uns['bench']`` holds its name and sha256 too."""

    name: str
    adata: ad.AnnData
    sha256: str
    manifest: DatasetManifest | None = None


def _is_path(text: str) -> bool:
    return text.endswith(".h5ad") or os.sep in text or Path(text).is_file()


def load_dataset(
    name_or_path: str | Path,
    *,
    perturbation_key: str | None = None,
    control_value: str | None = None,
    cell_type_key: str | None = None,
    gene_symbols_key: str | None = None,
    store: DataStore | None = None,
) -> Dataset:
    """A dataset by manifest name, or an .h5ad file in the generic format read with the given keys."""
    given = {
        ("perturbation", "--perturbation-key"): perturbation_key,
        ("control", "--control-value"): control_value,
        ("cell_type", "--cell-type-key"): cell_type_key,
        ("gene_symbols", "--gene-symbols-key"): gene_symbols_key,
    }
    given = {names: value for names, value in given.items() if value is not None}
    keys = {key: value for (key, _), value in given.items()}
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _is_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise DataError(f"dataset file {path} does not exist; give an .h5ad path or a name from `bench data list`")
        return _finish(path.stem, load_h5ad(path, "h5ad", keys), file_sha256(path), None)
    manifest = find_manifest(text)
    if keys:
        options = ", ".join(option for _, option in given)
        verb = "apply" if len(given) > 1 else "applies"
        raise DataError(f"{options} {verb} to .h5ad paths only; dataset '{text}' sets its keys in {manifest.path}")
    if manifest.kind != "dataset":
        raise DataError(f"'{text}' is a {manifest.kind}, not a perturbation dataset; see `bench data list`")
    if manifest.format == "synthetic":
        adata, sha = simulated(manifest)
        return _finish(manifest.name, adata, sha, manifest)
    store = store or DataStore.default()
    path = store.require(manifest)
    return _finish(manifest.name, load_h5ad(path, manifest.format, manifest.keys), file_sha256(path), manifest)


def _finish(name: str, adata: ad.AnnData, sha256: str, manifest: DatasetManifest | None) -> Dataset:
    adata.uns["bench"] = {"dataset": name, "sha256": sha256}
    return Dataset(name, adata, sha256, manifest)


def simulator_sha256(params: dict) -> str:
    """The identity of a simulated dataset: its simulator parameters and the simulator's version."""
    from bench.data import simulator

    version = simulator.VERSION
    payload = json.dumps({"simulator": version, "params": params}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def simulated(manifest: DatasetManifest) -> tuple[ad.AnnData, str]:
    """The simulated dataset of a ``synthetic`` manifest, from the cache or made now (and cached)."""
    from bench.data.simulator import simulate

    sha = simulator_sha256(manifest.simulator)
    cached = paths.cache_dir() / "synthetic" / f"{sha}.h5ad"
    if cached.is_file():
        return tidy(read_h5ad(cached)), sha
    adata = tidy(simulate(**manifest.simulator))
    check_canonical(adata, f"dataset '{manifest.name}'")
    _write_cache(adata, cached)
    return adata, sha


def _write_cache(adata: ad.AnnData, path: Path) -> None:
    """Write ``path`` atomically; a cache that cannot be written only costs time, so it warns."""
    try:
        with atomic.replacing(path) as temporary:
            adata.write_h5ad(temporary)
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
