"""A dataset cut by a split, without copying its expression matrices.

The parts are AnnData views of the dataset: a model that reads only the training pseudobulk (the
baselines) never makes a copy, and one that reads ``X`` copies only the rows of its part. The
pseudobulk of every part comes from one pass over the matrix (``means``), shared by training, scoring
and every model run on the same split.
"""

from __future__ import annotations

from functools import cached_property

import anndata as ad
import numpy as np
import pandas as pd

from bench.core.pseudobulk import group_sums

PARTS = ("train", "val", "test")
MEAN_PARTS = (*PARTS, "query_control")  # the parts whose means are computed (the control row of a run's predictions file)


class SplitData:
    """What the model trains on (``train``, ``val``), and what the harness keeps for predicting and
    scoring (``query_control``, ``test``, the test ``subgroups``)."""

    def __init__(self, split, adata: ad.AnnData):
        # A new AnnData over the same matrices, without uns: a simulator's ground truth never reaches a model.
        self.cells = ad.AnnData(X=adata.X, obs=adata.obs, var=adata.var, layers=dict(adata.layers))
        obs = adata.obs
        condition = obs["condition"].to_numpy()
        query = obs.index.isin(split.cells.get("query_control", []))
        if split.name == "seen":
            test = obs.index.isin(split.cells["test"])
            val = obs.index.isin(split.cells["val"])
        else:
            test = np.isin(condition, list(split.test))
            val = np.isin(condition, list(split.val))
        train = np.isin(condition, split.train) & ~query & ~test & ~val
        self.masks = {"train": train, "val": val, "test": test, "query_control": query}
        self.subgroups = dict(split.test)
        self.split_sha256 = split.sha256
        self.interactions: dict[str, dict] = {part: {} for part in PARTS}  # observed doubles' Truth per part

    def _part(self, name: str) -> ad.AnnData:
        return self.cells[self.masks[name]]

    @property
    def train(self) -> ad.AnnData:
        return self._part("train")

    @property
    def val(self) -> ad.AnnData:
        return self._part("val")

    @property
    def test(self) -> ad.AnnData:
        return self._part("test")

    @property
    def query_control(self) -> ad.AnnData:
        return self._part("query_control")

    def means(self, part: str) -> dict[str, pd.DataFrame]:
        """Per cell type, the mean expression of each condition of ``part`` (rows, sorted) over genes;
        ``part`` is one of ``MEAN_PARTS``."""
        return self._means[part]

    def pseudobulk(self, part: str = "train") -> pd.DataFrame:
        """The means of ``part`` as one DataFrame indexed by (cell_type, condition)."""
        tables = self._means[part]
        if not tables:
            index = pd.MultiIndex.from_arrays([[], []], names=["cell_type", "condition"])
            return pd.DataFrame(np.zeros((0, self.cells.n_vars)), index=index, columns=self.cells.var_names)
        return pd.concat(tables, names=["cell_type", "condition"])

    @cached_property
    def _means(self) -> dict[str, dict[str, pd.DataFrame]]:
        obs = self.cells.obs
        groups, labels = pd.factorize(pd.MultiIndex.from_arrays(
            [obs["cell_type"].astype(str).to_numpy(), obs["condition"].astype(str).to_numpy()]), sort=True)
        part = np.full(len(obs), -1)
        for number, name in enumerate(MEAN_PARTS):
            part[self.masks[name]] = number
        combined = np.where(part >= 0, part * len(labels) + groups, -1)
        present, codes = np.unique(combined[part >= 0], return_inverse=True)
        row_codes = np.full(len(obs), -1)
        row_codes[part >= 0] = codes
        sums = group_sums(self.cells.X, row_codes, len(present))
        means = sums / np.bincount(codes, minlength=len(present))[:, None]
        result: dict[str, dict[str, pd.DataFrame]] = {name: {} for name in MEAN_PARTS}
        for number, name in enumerate(MEAN_PARTS):
            rows = np.flatnonzero(present // len(labels) == number)
            keys = labels[present[rows] % len(labels)]
            for cell_type in sorted({key[0] for key in keys}):
                chosen = [i for i, key in zip(rows, keys) if key[0] == cell_type]
                conditions = [key[1] for key in keys if key[0] == cell_type]
                result[name][cell_type] = pd.DataFrame(means[chosen], index=pd.Index(conditions, name="condition"),
                                                       columns=self.cells.var_names)
        return result
