"""What models that predict from control cells share: which control cells to start from, and the
AnnData of the predicted cells."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from bench.core.api import PredictQuery
from bench.core.errors import ModelError


def starting_rows(query: PredictQuery, genes: list[str], max_cells: int) -> np.ndarray:
    """Rows of the query's control cells: all of them, or ``max_cells`` drawn with ``query.seed``."""
    if not query.control.n_obs:
        raise ModelError("the query has no control cells to start the prediction from")
    if query.genes != genes:
        raise ModelError("the query's genes differ from the training genes")
    rows = np.arange(query.control.n_obs)
    if len(rows) > max_cells:
        rows = np.sort(np.random.default_rng(query.seed).choice(rows, size=max_cells, replace=False))
    return rows


def cells_anndata(cells: np.ndarray, query: PredictQuery, genes: list[str]) -> ad.AnnData:
    """``cells`` (conditions x cells x genes) as AnnData with ``obs['condition']`` and ``obs['cell_type']``."""
    obs = pd.DataFrame({"condition": np.repeat(query.conditions, cells.shape[1]), "cell_type": query.cell_type})
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=cells.reshape(-1, len(genes)), obs=obs, var=pd.DataFrame(index=genes))
