"""Sums and means of expression per group of cells (pseudobulk), in one pass over the matrix.

A compiled loop adds each stored value of a CSR matrix to its group's row: at Norman scale (100,000
cells x 5,000 genes, 37% non-zero) it takes about a tenth of the time of the indicator-matrix product
``scipy.sparse`` offers, and no temporary of the size of the matrix (``benchmarks/test_performance.py``).
Kept rather than ``scanpy.get.aggregate(func="mean")``: on 50,000 x 5,000 cells (20% non-zero) ours is 3.4x
faster with 17x less temporary memory, and scanpy 1.11's aggregate with a ``mask`` counts the masked cells
in group 0 (fixed by scverse/scanpy PR #4178, in 1.12).
"""

from __future__ import annotations

import anndata as ad
import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp


@numba.njit(cache=True, nogil=True)
def _csr_sums(data, indices, indptr, codes, out, squared):
    for row in range(len(indptr) - 1):
        code = codes[row]
        if code >= 0:
            for k in range(indptr[row], indptr[row + 1]):
                value = data[k]
                out[code, indices[k]] += value * value if squared else value


@numba.njit(cache=True, nogil=True)
def _dense_sums(X, codes, out, squared):
    for row in range(X.shape[0]):
        code = codes[row]
        if code >= 0:
            for j in range(X.shape[1]):
                value = X[row, j]
                out[code, j] += value * value if squared else value


def group_sums(X, codes: np.ndarray, n_groups: int, squared: bool = False) -> np.ndarray:
    """Float64 sums of the rows of ``X`` (or of their squares) per group: row ``r`` adds to ``codes[r]``;
    a code of -1 skips it. A square is taken in ``X``'s own precision, as scanpy's mean and variance do
    (``scanpy/preprocessing/_utils.py``, ``sparse_mean_var_minor_axis``)."""
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    out = np.zeros((n_groups, X.shape[1]))
    if sp.issparse(X):
        X = X if X.format == "csr" else sp.csr_matrix(X)
        _csr_sums(X.data, X.indices, X.indptr, codes, out, squared)
    else:
        _dense_sums(np.asarray(X), codes, out, squared)
    return out


def group_means(X, labels: pd.Series | np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row means of ``X`` per label (of the rows ``keep`` marks, default all): the sorted unique labels
    and a (labels x genes) float64 matrix."""
    labels = np.asarray(labels)
    keep = np.ones(len(labels), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    codes = np.full(len(labels), -1, dtype=np.int64)
    codes[keep], uniques = pd.factorize(labels[keep], sort=True)
    sums = group_sums(X, codes, len(uniques))
    return np.asarray(uniques), sums / np.bincount(codes[codes >= 0], minlength=len(uniques))[:, None]


def pseudobulk(adata: ad.AnnData, keep: np.ndarray | None = None) -> pd.DataFrame:
    """Mean log-expression of every (cell_type, condition) (of the cells ``keep`` marks, default all):
    a DataFrame with a two-level index."""
    obs = adata.obs
    keys = obs["cell_type"].astype(str) + "\x1f" + obs["condition"].astype(str)
    labels, means = group_means(adata.X, keys, keep)
    index = pd.MultiIndex.from_tuples(
        [tuple(label.split("\x1f")) for label in labels], names=["cell_type", "condition"]
    )
    return pd.DataFrame(means, index=index, columns=adata.var_names)
