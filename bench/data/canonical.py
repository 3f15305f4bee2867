"""The canonical form every loader produces, and the checks that hold it to that form.

Canonical AnnData: ``X`` log1p-normalised expression, float32 (CSR when sparse), finite and
non-negative; ``obs['condition']`` canonical (``ctrl``, ``A``, ``A+B`` sorted) with control cells in
every cell type; ``obs['cell_type']``; unique gene symbols as ``var_names``; unique ``obs_names``;
optional ``layers['counts']`` with the raw counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.core.conditions import CONTROL, canonical, genes_of
from bench.core.errors import DataError

DEFAULT_CELL_TYPE = "default"
BLOCK_ROWS = 8192
BLOCK_VALUES = 1 << 24


@dataclass(frozen=True)
class Summary:
    """What a scan of an expression matrix found."""

    finite: bool
    minimum: float
    maximum: float
    integer: bool


def _blocks(X):
    if sp.issparse(X):
        for start in range(0, X.data.size, BLOCK_VALUES):
            yield X.data[start : start + BLOCK_VALUES]
        return
    for start in range(0, X.shape[0], BLOCK_ROWS):
        yield np.asarray(X[start : start + BLOCK_ROWS])


def summarize(X) -> Summary:
    """One pass over the stored values of ``X`` (row blocks for dense matrices, to bound memory)."""
    finite, integer = True, True
    minimum, maximum = 0.0, 0.0
    for values in _blocks(X):
        if values.size == 0:
            continue
        if not np.issubdtype(values.dtype, np.number):
            raise DataError(f"X holds {values.dtype} values, not numbers")
        ok = np.isfinite(values)
        if not ok.all():
            finite = False
            values = values[ok]
            if values.size == 0:
                continue
        minimum = min(minimum, float(values.min()))
        maximum = max(maximum, float(values.max()))
        integer = integer and bool(np.all(np.mod(values, 1) == 0))
    return Summary(finite, minimum, maximum, integer)


def check_values(summary: Summary, where: str) -> None:
    """Expression values must be finite and non-negative."""
    if not summary.finite:
        raise DataError(f"{where}: X has NaN or infinite values; fix or drop those cells and genes")
    if summary.minimum < 0:
        raise DataError(
            f"{where}: X has negative values (min {summary.minimum:.3g}); give log1p-normalised "
            "expression or raw counts, not scaled or centred data"
        )


def is_canonical(condition: str) -> bool:
    genes = genes_of(condition)
    return condition == CONTROL or (0 < len(genes) <= 2 and all(genes) and canonical(genes) == condition)


def tidy(adata: ad.AnnData) -> ad.AnnData:
    """Canonical storage types in place: float32 CSR or dense ``X``, plain-string obs labels."""
    X = adata.X
    if sp.issparse(X):
        adata.X = sp.csr_matrix(X, dtype=np.float32)
    elif X.dtype != np.float32:
        adata.X = np.asarray(X, dtype=np.float32)
    for column in ("condition", "cell_type"):
        if column in adata.obs:
            adata.obs[column] = adata.obs[column].astype(str).to_numpy(dtype=object)
    return adata


def check_canonical(adata: ad.AnnData, where: str) -> None:
    """Raise a one-line ``DataError`` unless ``adata`` is canonical."""
    for column in ("condition", "cell_type"):
        if column not in adata.obs:
            raise DataError(f"{where}: obs has no '{column}' column")
    if adata.X is None or adata.X.dtype != np.float32:
        raise DataError(f"{where}: X must be float32 expression")
    check_values(summarize(adata.X), where)
    conditions = adata.obs["condition"].astype(str)
    bad = [c for c in conditions.unique() if not is_canonical(c)]
    if bad:
        raise DataError(f"{where}: condition {bad[0]!r} is not canonical ('{CONTROL}', 'A' or 'A+B' sorted)")
    cell_types = adata.obs["cell_type"].astype(str)
    with_control = set(cell_types[conditions == CONTROL])
    if not with_control:
        raise DataError(f"{where}: no control cells ('{CONTROL}')")
    lacking = sorted(set(cell_types) - with_control)
    if lacking:
        raise DataError(f"{where}: cell type {lacking[0]!r} has no control cells; each cell type needs its own")
    if not adata.var_names.is_unique:
        duplicated = adata.var_names[adata.var_names.duplicated()]
        raise DataError(f"{where}: duplicate gene symbol {duplicated[0]!r} ({len(duplicated)} duplicates)")
    if not adata.obs_names.is_unique:
        raise DataError(f"{where}: cell names (obs_names) are not unique")
