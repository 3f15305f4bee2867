"""What ``bench leaderboard`` reads besides the runs' rows, handed to ``bench.reporting`` as plain tables: the
runs' per-perturbation scores, and for the scatter plot the split, the predictions and the dataset's observed
change on each test perturbation's DE genes."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from bench.core import atomic, paths
from bench.core.conditions import CONTROL
from bench.core.errors import BenchError, BenchWarning
from bench.data.datasets import load_dataset
from bench.evaluation import splits
from bench.evaluation.de import cached_de_genes
from bench.evaluation.split_data import SplitData
from bench.reporting import leaderboard as lb
from bench.reporting import plots
from bench.workflows import tracking

SCORES = "per_perturbation.csv"
CACHE = "run-artifacts"  # in the cache folder, by run id: an ended run's artifacts never change, so each is
# fetched from the store once


def artifact(run_id: str, name: str) -> Path | None:
    """A run's artifact from the local cache, fetched from the tracking store the first time; None when the
    run has no such artifact (not remembered: asked again next time)."""
    path = paths.cache_dir() / CACHE / run_id / name
    if path.exists():
        return path
    with tempfile.TemporaryDirectory(prefix=".fetching-", dir=paths.cache_dir()) as folder:
        fetched = tracking.run_artifact(run_id, name, Path(folder))
        if fetched is None:
            return None
        with atomic.replacing(path) as temporary:
            os.replace(fetched, temporary)
    return path


def per_perturbation(run_id: str) -> pd.DataFrame | None:
    """A run's per-perturbation scores; None when it stored none."""
    path = artifact(run_id, SCORES)
    return pd.read_csv(path) if path else None


def boards(dataset: str, split: str | None = None, latest: bool = False,
           stored: lb.PerPerturbation | None = None) -> list[lb.Board]:
    """The leaderboard boards of a dataset's tracked runs (``leaderboard.boards``). Whether a run stored its
    scores is learnt by reading them into ``stored`` (``scores()``), from which the tables take them."""
    stored = stored or scores()
    return lb.boards(tracking.runs(dataset), dataset, lambda run_id: stored.by_id(run_id) is not None, split,
                     latest)


def scores() -> lb.PerPerturbation:
    """The per-perturbation scores of tracked runs, each read once."""
    return lb.PerPerturbation(per_perturbation)


def _split_of(run: lb.Run) -> splits.Split:
    path = artifact(run.run_id, "split.json")
    if path is None:
        raise BenchError(f"run {run.run_id} has no split.json artifact")
    split = splits.Split.from_json(path.read_text(), where=f"split.json of run {run.run_id}")
    if split.sha256 != run.split_sha256:
        raise BenchError(f"split.json of run {run.run_id} has sha256 {split.sha256[:12]}, "
                         f"but the run was tagged with {str(run.split_sha256)[:12]}")
    return split


def predictions(run_id: str) -> pd.DataFrame | None:
    """A run's predicted means indexed by (cell_type, condition), its control rows left out; None without
    the artifact."""
    path = artifact(run_id, "predictions.h5ad")
    if path is None:
        return None
    adata = ad.read_h5ad(path)
    adata = adata[(adata.obs["condition"].astype(str) != CONTROL).to_numpy()]
    index = pd.MultiIndex.from_arrays([adata.obs["cell_type"].astype(str), adata.obs["condition"].astype(str)])
    return pd.DataFrame(np.asarray(adata.X), index=index, columns=adata.var_names)


def observed_changes(data: SplitData, de20: dict) -> tuple[dict[str, pd.Series], dict, dict]:
    """The training-control mean per cell type, and per test (cell_type, condition) the observed change of
    its test cells on its DE genes, and those genes."""
    control = {ct: means.loc[CONTROL] for ct, means in data.means("train").items()}
    observed, genes = {}, {}
    for cell_type, means in data.means("test").items():
        for condition in means.index:
            key = (cell_type, condition)
            genes[key] = de20[cell_type][condition]
            observed[key] = (means.loc[condition] - control[cell_type])[genes[key]].to_numpy()
    return control, observed, genes


def scatter_data(board: lb.Board, metric: str) -> plots.ScatterData | None:
    """What the board's scatter plot draws (``plots.scatter_rows`` picks the seed and the rows); None when
    no chosen run stored predictions. The dataset and its DE genes are loaded only then."""
    chosen = plots.scatter_rows(board, metric)
    if chosen is None:
        return None
    seed, rows, left_out = chosen
    split = _split_of(rows[0].runs[seed])
    found = [(row.label, predictions(row.runs[seed].run_id)) for row in rows]
    found = [(label, frame) for label, frame in found if frame is not None]
    if not found:
        return None
    control, observed, genes = _observed_of(board.dataset, split)
    return plots.ScatterData(seed, rows, left_out, split.test, found, control, observed, genes)


def _observed_of(dataset_name: str, split: splits.Split) -> tuple[dict[str, pd.Series], dict, dict]:
    """``observed_changes`` of a split's test cells, cached by dataset and split checksum (the dataset is
    loaded only the first time); a cache file that cannot be read is recomputed with a warning."""
    path = paths.cache_dir() / "scatter" / f"{dataset_name}-{split.dataset_sha256[:16]}-{split.sha256[:16]}.npz"
    if path.exists():
        try:
            return _read_observed(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            warnings.warn(f"scatter cache {path} is unusable ({exc}); recomputing it", BenchWarning)
    dataset = load_dataset(dataset_name, counts=False)
    de20 = cached_de_genes(dataset.adata, dataset.name, dataset.sha256)
    control, observed, genes = observed_changes(splits.apply(split, dataset.adata), de20)
    _write_observed(path, control, observed, genes)
    return control, observed, genes


def _write_observed(path: Path, control: dict[str, pd.Series], observed: dict, genes: dict) -> None:
    """Arrays at their own dtypes (the plot is drawn from the same values as from the dataset), names as JSON."""
    keys = sorted(observed)
    names = {"cell_types": list(control), "genes": [str(g) for g in next(iter(control.values())).index],
             "tests": [[cell_type, condition, list(genes[(cell_type, condition)])] for cell_type, condition in keys]}
    arrays = {f"control_{i}": series.to_numpy() for i, series in enumerate(control.values())}
    arrays |= {f"observed_{i}": observed[key] for i, key in enumerate(keys)}
    with atomic.replacing(path) as temporary, open(temporary, "wb") as file:
        np.savez(file, names=np.array(json.dumps(names)), **arrays)


def _read_observed(path: Path) -> tuple[dict[str, pd.Series], dict, dict]:
    with np.load(path, allow_pickle=False) as stored:
        names = json.loads(str(stored["names"]))
        control = {cell_type: pd.Series(stored[f"control_{i}"], index=pd.Index(names["genes"]))
                   for i, cell_type in enumerate(names["cell_types"])}
        observed = {(ct, condition): stored[f"observed_{i}"] for i, (ct, condition, _) in enumerate(names["tests"])}
    genes = {(ct, condition): test_genes for ct, condition, test_genes in names["tests"]}
    return control, observed, genes
