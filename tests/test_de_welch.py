"""``de.welch_de_genes`` (the dataset's DE20 and the data ceiling's, from group moments) picks the genes
scanpy's t-test picks, called as GEARS calls it (``scanpy_de.scanpy_de_genes``), in the same order."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from scanpy_de import scanpy_de_genes

from bench.core.conditions import CONTROL
from bench.evaluation import de


def _random_cells(rng: np.random.Generator) -> ad.AnnData:
    """Two cell types; conditions of 1 to 9 cells; a cell type with a single control cell (no t-test)."""
    groups = [("A", CONTROL, 12), ("A", "X", 5), ("A", "Y", 1), ("A", "Z", 9), ("B", CONTROL, 1), ("B", "X", 4)]
    obs = pd.DataFrame([(t, c) for t, c, n in groups for _ in range(n)], columns=["cell_type", "condition"])
    obs.index = [f"c{i}" for i in range(len(obs))]
    X = np.round(rng.gamma(0.5, 1.0, (len(obs), 60)) * (rng.random((len(obs), 60)) < 0.4), 1).astype(np.float32)
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(60)]))


def test_welch_ranking_equals_scanpy_on_random_sparse_cells():
    rng = np.random.default_rng(0)
    for _ in range(5):
        cells = _random_cells(rng)
        assert de.welch_de_genes(cells, np.ones(cells.n_obs, dtype=bool)) == scanpy_de_genes(cells)


def test_welch_ranking_equals_scanpy_on_norman_subset_and_its_halves(norman_subset):
    cells = norman_subset.adata
    assert de.welch_de_genes(cells, np.ones(cells.n_obs, dtype=bool)) == scanpy_de_genes(cells)
    rng = np.random.default_rng(1)
    for _ in range(10):  # the half-sized groups of the ceiling, where ties of sparse counts are common
        keep = rng.random(cells.n_obs) < 0.5
        assert de.welch_de_genes(cells, keep) == scanpy_de_genes(cells[keep])


def test_welch_ranking_equals_scanpy_on_the_simulator():
    """The other dataset of the committed leaderboards: 100 conditions of 27 cells, 1,000 genes."""
    from bench.data.datasets import load_dataset

    cells = load_dataset("synthetic", counts=False).adata
    assert de.welch_de_genes(cells, np.ones(cells.n_obs, dtype=bool)) == scanpy_de_genes(cells)
