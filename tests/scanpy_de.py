"""The reference DE20 of the parity tests: scanpy's ``rank_genes_groups`` called as GEARS calls it
(``gears/data_utils.py``, ``rank_genes_groups_by_cov``: per cell type, t-test against the control group,
``rankby_abs=True``, the top 20), written apart from ``bench.evaluation.de`` so that the tests compare that
module's own statistic with scanpy's. A condition without a t statistic (one cell, or a cell type with one
control cell) is ranked by the absolute difference of its mean from control's."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from bench.core.conditions import CONTROL

OUTSIDE = "\x1foutside"  # cells of other cell types, in no group


def _one_cell_type(adata: ad.AnnData, rows: np.ndarray, n_genes: int) -> dict[str, list[str]]:
    conditions = adata.obs["condition"].astype(str).to_numpy()
    counts = pd.Series(conditions[rows]).value_counts()
    perturbed = sorted(c for c in counts.index if c != CONTROL)
    testable = [c for c in perturbed if counts[c] >= 2] if counts.get(CONTROL, 0) >= 2 else []
    result: dict[str, list[str]] = {}
    if testable:
        labels = pd.Categorical(np.where(rows & np.isin(conditions, [*testable, CONTROL]), conditions, OUTSIDE))
        cells = ad.AnnData(X=adata.X, obs=pd.DataFrame({"condition": labels}, index=adata.obs_names), var=adata.var)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.tl.rank_genes_groups(cells, groupby="condition", groups=testable, reference=CONTROL, method="t-test",
                                    rankby_abs=True, n_genes=n_genes, use_raw=False)
        names = cells.uns["rank_genes_groups"]["names"]
        result = {c: [str(g) for g in names[c]] for c in testable}
    def mean(condition: str) -> np.ndarray:
        return np.asarray(adata.X[rows & (conditions == condition)].astype(np.float64).mean(axis=0)).ravel()

    for condition in (c for c in perturbed if c not in result):
        change = mean(condition) - mean(CONTROL)
        result[condition] = [str(adata.var_names[i]) for i in np.argsort(-np.abs(change), kind="stable")[:n_genes]]
    return result


def scanpy_de_genes(adata: ad.AnnData, n_genes: int = 20) -> dict[str, dict[str, list[str]]]:
    """``{cell_type: {condition: [top genes]}}``, as ``bench.evaluation.de.de_genes`` returns it."""
    n_genes = min(n_genes, adata.n_vars)
    cell_types = adata.obs["cell_type"].astype(str).to_numpy()
    return {ct: dict(sorted(_one_cell_type(adata, cell_types == ct, n_genes).items())) for ct in sorted(set(cell_types))}
