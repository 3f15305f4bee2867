"""DE20: the top differentially expressed genes of every condition against control, as GEARS does.

GEARS (``gears/data_utils.py``, ``rank_genes_groups_by_cov``) ranks genes per cell type with scanpy's
``rank_genes_groups`` (t-test, reference the control group, ``rankby_abs=True``) on the whole dataset
and takes the top 20. Conditions with a single cell have no t statistic; for them genes are ranked by
absolute difference of means. Results are cached per dataset checksum.

``welch_de_genes`` computes scanpy's statistic and choice from each group's mean and variance, summed in
one pass over the matrix: scanpy subsets the matrix once per group, which at 2,000 groups (a genome-scale
screen) takes minutes, and the data ceiling ranks the genes of one half of the cells on every halving. It is
tested to pick scanpy's genes, in scanpy's order, on real data and on random sparse cells with ties
(``tests/test_de_welch.py``, against scanpy called as GEARS calls it).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from bench.core import atomic, paths
from bench.core.conditions import CONTROL
from bench.core.errors import BenchWarning
from bench.core.pseudobulk import group_sums

TOP_DE = 20


def _by_test(counts: pd.Series) -> tuple[list[str], list[str]]:
    """The conditions of a cell type (``counts``: cells per condition, control included) that the t-test
    ranks (2 cells or more, with 2 control cells or more), and the others, ranked by difference of means."""
    conditions = sorted(c for c in counts.index if c != CONTROL)
    if counts.get(CONTROL, 0) < 2:
        return [], conditions
    return [c for c in conditions if counts[c] >= 2], [c for c in conditions if counts[c] < 2]


def _top(adata: ad.AnnData, scores: np.ndarray, n_genes: int) -> list[str]:
    """The names of the ``n_genes`` genes of largest absolute score, largest first."""
    return [str(adata.var_names[i]) for i in np.argsort(-np.abs(scores), kind="stable")[:n_genes]]


def de_genes(adata: ad.AnnData, n_genes: int = TOP_DE) -> dict[str, dict[str, list[str]]]:
    """``{cell_type: {condition: [top genes]}}`` for every perturbation condition: ``welch_de_genes`` of all
    cells."""
    return welch_de_genes(adata, np.ones(adata.n_obs, dtype=bool), n_genes)


def _top_as_scanpy(adata: ad.AnnData, scores: np.ndarray, n_genes: int) -> list[str]:
    """``_top`` with scanpy's choice among tied scores (``_select_top_n`` in
    ``scanpy/tools/_rank_genes_groups.py``): a partition, then a sort of the ``n_genes`` it keeps."""
    scores = np.abs(scores)
    kept = np.argpartition(scores, -n_genes)[-n_genes:]
    return [str(adata.var_names[i]) for i in kept[np.argsort(scores[kept])[::-1]]]


def welch_de_genes(adata: ad.AnnData, keep: np.ndarray, n_genes: int = TOP_DE) -> dict[str, dict[str, list[str]]]:
    """``de_genes`` of the cells ``keep`` marks, from group means and variances instead of scanpy: the
    t statistic of scanpy's ``t-test`` (``scipy.stats.ttest_ind_from_stats``, ``equal_var=False``: Welch's,
    on float64 means and unbiased variances; 0 where undefined, as ``scanpy/tools/_rank_genes_groups.py``)."""
    n_genes = min(n_genes, adata.n_vars)
    obs = adata.obs
    keys = pd.MultiIndex.from_arrays([obs["cell_type"].astype(str).to_numpy(), obs["condition"].astype(str).to_numpy()])
    codes = np.full(adata.n_obs, -1, dtype=np.int64)
    codes[keep], groups = pd.factorize(keys[keep], sort=True)
    counts = np.bincount(codes[codes >= 0], minlength=len(groups)).astype(float)[:, None]
    means = group_sums(adata.X, codes, len(groups)) / counts
    variances = group_sums(adata.X, codes, len(groups), squared=True) / counts - means**2
    variances *= np.where(counts > 1, counts / np.maximum(counts - 1, 1), 1.0)  # scanpy's unbiased estimator
    row = {group: i for i, group in enumerate(groups)}
    result: dict[str, dict[str, list[str]]] = {}
    for cell_type in sorted(groups.get_level_values(0).unique()):
        found = {c: int(counts[row[(ct, c)], 0]) for ct, c in groups if ct == cell_type}
        testable, others = _by_test(pd.Series(found))
        c = row[(cell_type, CONTROL)]
        result[cell_type] = {}
        for condition in testable + others:
            g = row[(cell_type, condition)]
            difference = means[g] - means[c]
            if condition not in testable:
                result[cell_type][condition] = _top(adata, difference, n_genes)
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                t = difference / np.sqrt(variances[g] / counts[g] + variances[c] / counts[c])
            t[np.isnan(t)] = 0
            result[cell_type][condition] = _top_as_scanpy(adata, t, n_genes)
        result[cell_type] = dict(sorted(result[cell_type].items()))
    return result


def cached_de_genes(adata: ad.AnnData, dataset: str, sha256: str) -> dict[str, dict[str, list[str]]]:
    """``de_genes`` cached under the cache directory by dataset name and checksum. A cache file that
    cannot be read, or does not list the dataset's conditions, is recomputed with a warning."""
    path = paths.cache_dir() / "de" / f"{dataset}-{sha256[:16]}-top{TOP_DE}.json"
    if path.exists():
        try:
            return _read_cache(path, adata)
        except (OSError, ValueError) as exc:
            warnings.warn(f"DE gene cache {path} is unusable ({exc}); recomputing it", BenchWarning)
    result = de_genes(adata)
    atomic.write_text(path, json.dumps(result))
    return result


def _read_cache(path: Path, adata: ad.AnnData) -> dict[str, dict[str, list[str]]]:
    """The table in ``path``; ValueError when it is not what ``de_genes(adata)`` returns in shape and keys."""
    table = json.loads(path.read_text())
    if not _is_de_table(table):
        raise ValueError("not a {cell_type: {condition: [gene, ...]}} table")
    if {cell_type: set(conditions) for cell_type, conditions in table.items()} != _conditions(adata):
        raise ValueError("its conditions are not the dataset's")
    return table


def _is_de_table(table: object) -> bool:
    return isinstance(table, dict) and all(
        isinstance(conditions, dict)
        and all(isinstance(genes, list) and all(isinstance(g, str) for g in genes) for genes in conditions.values())
        for conditions in table.values()
    )


def _conditions(adata: ad.AnnData) -> dict[str, set[str]]:
    """The perturbation conditions of each cell type: the keys of ``de_genes(adata)``."""
    obs = adata.obs[["cell_type", "condition"]].astype(str)
    return {str(cell_type): set(group["condition"]) - {CONTROL} for cell_type, group in obs.groupby("cell_type")}
