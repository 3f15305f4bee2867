"""Adaptations of cell-gears 0.1.2 that leave its installed code untouched.

- ``PandasIndexCSR``: ``GEARS.__init__`` indexes ``adata.X`` with a pandas Series (``adata.obs.condition ==
  'ctrl'``), which scipy ≥ 1.15 rejects (``'Series' object has no attribute 'nonzero'``).
- ``EpochReporter``: a stand-in for GEARS' Weights & Biases hook (``GEARS.wandb.log``).
- ``install_go_rows``: ``GEARS_Model.forward`` (``gears/model.py:155-183``) runs its GO GNN over every node
  but reads only the batch's perturbed genes, four fifths of a training step over the genome-wide graph;
  the model then computes only those rows (``bench.adapters.kit.row_gnn``), the same values.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import scipy.sparse as sp
from torch import nn

from bench.adapters.kit.row_gnn import GraphEdges, LayerRows, RenormedTable, RowSGConv
from bench.core.api import no_progress

VALIDATION_KEY = "val_de_mse"


class PandasIndexCSR(sp.csr_matrix):
    """A ``scipy.sparse.csr_matrix`` that turns pandas Series and Index indices into NumPy arrays first."""

    def __getitem__(self, index):
        return super().__getitem__(tuple(map(_plain, index)) if isinstance(index, tuple) else _plain(index))


def _plain(index: object) -> object:
    return index.to_numpy() if isinstance(index, (pd.Series, pd.Index)) else index


class EpochReporter:
    """Passes GEARS' model-selection value, the validation MSE on the top 20 DE genes, negated, to ``report``
    once per epoch, and the epochs done of ``total_epochs`` to ``progress``; steps continue from
    ``first_step`` so that several GEARS models (one per cell type) report one increasing sequence."""

    def __init__(self, report: Callable[[int, float], None], first_step: int = 0,
                 progress: Callable[..., None] = no_progress, total_epochs: int | None = None) -> None:
        self.report, self.step, self.progress, self.total_epochs = report, first_step, progress, total_epochs
        progress("training", first_step, total_epochs)

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
