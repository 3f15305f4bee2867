"""DE20: the top differentially expressed genes of every condition against control, as GEARS does.

GEARS (``gears/data_utils.py``, ``rank_genes_groups_by_cov``) ranks genes per cell type with scanpy's
``rank_genes_groups`` (t-test, reference the control group, ``rankby_abs=True``) on the whole dataset
and takes the top 20. Conditions with a single cell have no t statistic; for them genes are ranked by
absolute difference of means, and the fallback is named in the result. Results are cached per dataset
checksum because the test is the slowest step of an evaluation at Norman scale.
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
from bench.core.pseudobulk import group_means

TOP_DE = 20
OTHER = "\x1fother"  # the label of cells outside the groups being ranked (no condition is named so)


def _rank_one_cell_type(adata: ad.AnnData, rows: np.ndarray, n_genes: int) -> dict[str, list[str]]:
    """The DE genes of the conditions of the cells ``rows`` marks (one cell type). scanpy is given an
    AnnData over the dataset's own matrix, labelled so that only those cells form groups: nothing is
    copied but the rows of one group at a time."""
    import scanpy as sc  # here, not at the top: a run with cached DE genes does without it (0.4 s)

    conditions = adata.obs["condition"].astype(str).to_numpy()
    counts = pd.Series(conditions[rows]).value_counts()
    testable = sorted(c for c in counts.index if c != CONTROL and counts[c] >= 2)
    result: dict[str, list[str]] = {}
    if testable and counts.get(CONTROL, 0) >= 2:
        grouped = rows & np.isin(conditions, [*testable, CONTROL])
        labels = pd.Categorical(np.where(grouped, conditions, OTHER))
        shared = ad.AnnData(X=adata.X, obs=pd.DataFrame({"condition": labels}, index=adata.obs_names), var=adata.var)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.tl.rank_genes_groups(
                shared,
                groupby="condition",
                groups=testable,
                reference=CONTROL,
                method="t-test",
                rankby_abs=True,
                n_genes=n_genes,
                use_raw=False,
            )
        names = shared.uns["rank_genes_groups"]["names"]
        result = {c: [str(g) for g in names[c]] for c in testable}
    others = sorted(c for c in counts.index if c != CONTROL and c not in result)
    if others:
        labels, means = group_means(adata.X, conditions, keep=rows)
        index = {label: i for i, label in enumerate(labels)}
        control = means[index[CONTROL]]
        for condition in others:
            order = np.argsort(-np.abs(means[index[condition]] - control), kind="stable")[:n_genes]
            result[condition] = [str(adata.var_names[i]) for i in order]
    return result


def de_genes(adata: ad.AnnData, n_genes: int = TOP_DE) -> dict[str, dict[str, list[str]]]:
    """``{cell_type: {condition: [top genes]}}`` for every perturbation condition."""
    n_genes = min(n_genes, adata.n_vars)
    cell_types = adata.obs["cell_type"].astype(str).to_numpy()
    return {cell_type: _rank_one_cell_type(adata, cell_types == cell_type, n_genes)
            for cell_type in sorted(set(cell_types))}


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
