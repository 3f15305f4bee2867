"""Adaptations of cell-gears 0.1.2 that leave its installed code untouched.

- ``PandasIndexCSR``: ``GEARS.__init__`` indexes ``adata.X`` with a pandas Series (``adata.obs.condition ==
  'ctrl'``), which scipy ≥ 1.15 rejects (``'Series' object has no attribute 'nonzero'``); this CSR matrix
  turns pandas indices into NumPy arrays first.
- ``EpochReporter``: a stand-in for GEARS' Weights & Biases hook (``GEARS.wandb.log``) that passes its
  model-selection value, the validation MSE on the top 20 DE genes, negated, to ``TrainData.report``.
- ``install_go_rows``: ``GEARS_Model.forward`` (``gears/model.py:155-183``) runs its GO GNN over every node
  but reads only the batch's perturbed genes, four fifths of a training step over the genome-wide graph;
  the model then computes only those rows (``bench.adapters.kit.row_gnn``), the same values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from torch import nn

from bench.adapters.kit.row_gnn import GraphEdges, LayerRows, RenormedTable, RowSGConv
from bench.core.api import no_progress

VALIDATION_KEY = "val_de_mse"


def _plain(index: object) -> object:
    if isinstance(index, tuple):
        return tuple(_plain(part) for part in index)
    return index.to_numpy() if isinstance(index, (pd.Series, pd.Index)) else index


class PandasIndexCSR(sp.csr_matrix):
    """A ``scipy.sparse.csr_matrix`` that accepts pandas Series and Index objects as indices."""

    def __getitem__(self, index):
        return super().__getitem__(_plain(index))


def pandas_indexable(matrix) -> PandasIndexCSR:
    """``matrix`` (sparse or dense) as a float32 ``PandasIndexCSR``."""
    return PandasIndexCSR(sp.csr_matrix(matrix, dtype=np.float32))


class EpochReporter:
    """Reports one value per epoch, and the epochs done of ``total_epochs`` to ``progress``; steps continue
    from ``first_step`` so that several GEARS models (one per cell type) report one increasing sequence."""

    def __init__(self, report: Callable[[int, float], None], first_step: int = 0,
                 progress: Callable[..., None] = no_progress, total_epochs: int | None = None) -> None:
        self.report, self.progress, self.total_epochs = report, progress, total_epochs
        self.step = first_step
        progress("training", self.step, total_epochs)

    def log(self, values: dict) -> None:
        if VALIDATION_KEY in values:
            self.step += 1
            self.progress("training", self.step, self.total_epochs)
            self.report(self.step, -float(values[VALIDATION_KEY]))


class BatchRows(LayerRows):
    """A forward pre-hook of ``GEARS_Model``: its GO layers compute the rows of the batch's perturbed genes."""

    def __call__(self, model: nn.Module, args: tuple) -> None:
        self.select(sorted({j for cell in args[0].pert_idx for j in cell if j != -1}))


def install_go_rows(model: nn.Module) -> None:
    """Make a ``gears.model.GEARS_Model`` compute its GO GNN only at the rows each batch reads."""
    rows = BatchRows(GraphEdges(model.G_sim, model.G_sim_weight, model.num_perts), len(model.sim_layers))
    model.pert_emb = RenormedTable(model.pert_emb)
    for depth, conv in enumerate(model.sim_layers):
        model.sim_layers[depth] = RowSGConv(conv, rows, depth)
    model.register_forward_pre_hook(rows)
