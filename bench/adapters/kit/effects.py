"""Pseudobulk effects shared by the simple baselines: control means and per-condition changes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import CONTROL


@dataclass
class Effects:
    """``control[cell_type]``: training-control mean; ``delta``: (cell_type, condition) -> mean change."""

    genes: list[str]
    control: dict[str, np.ndarray]
    delta: pd.DataFrame

    @classmethod
    def of(cls, train: TrainData) -> Effects:
        bulk = train.pseudobulk()
        control = {ct: bulk.loc[(ct, CONTROL)].to_numpy() for ct, cond in bulk.index if cond == CONTROL}
        perturbed = bulk[bulk.index.get_level_values("condition") != CONTROL]
        delta = perturbed - np.stack([control[ct] for ct in perturbed.index.get_level_values("cell_type")])
        return cls(train.genes, control, delta)

    def of_cell_type(self, cell_type: str) -> pd.DataFrame:
        """The changes of one cell type's training conditions, indexed by condition."""
        if cell_type in self.delta.index.get_level_values("cell_type"):
            return self.delta.xs(cell_type, level="cell_type")
        return self.delta.groupby(level="condition").mean()

    def mean_change(self, cell_type: str) -> np.ndarray:
        table = self.of_cell_type(cell_type)
        return table.to_numpy().mean(axis=0) if len(table) else np.zeros(len(self.genes))

    def baseline(self, cell_type: str) -> np.ndarray:
        if cell_type in self.control:
            return self.control[cell_type]
        return np.mean(list(self.control.values()), axis=0)


def prediction(query: PredictQuery, rows: dict[str, np.ndarray]) -> Prediction:
    """A Prediction of means from a condition -> vector mapping, in the query's order."""
    means = pd.DataFrame(np.stack([rows[c] for c in query.conditions]), index=query.conditions, columns=query.genes)
    return Prediction(means=means)
