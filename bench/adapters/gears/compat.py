"""Two adaptations of cell-gears 0.1.2 that leave its installed code untouched.

- ``PandasIndexCSR``: ``GEARS.__init__`` averages the control cells with ``adata.X[adata.obs.condition
  == 'ctrl']``, a pandas Series as the row index of a sparse matrix. scipy ≥ 1.15 calls ``.nonzero()``
  on boolean indices, which a Series lacks (``'Series' object has no attribute 'nonzero'``). This CSR
  matrix turns pandas indices into NumPy arrays first; the adapter gives it to GEARS as ``adata.X``.
- ``EpochReporter``: ``GEARS.train`` computes validation metrics every epoch but only shows them in log
  lines and through its Weights & Biases hook (``GEARS.wandb.log``). This stand-in for that hook
  passes GEARS' model-selection value, the validation MSE on the top 20 DE genes, negated (higher is
  better), to the harness's ``TrainData.report``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.core.api import no_progress

VALIDATION_KEY = "val_de_mse"


def _plain(index: object) -> object:
    if isinstance(index, tuple):
        return tuple(_plain(part) for part in index)
    if isinstance(index, (pd.Series, pd.Index)):
        return index.to_numpy()
    return index


class PandasIndexCSR(sp.csr_matrix):
    """A ``scipy.sparse.csr_matrix`` that accepts pandas Series and Index objects as indices."""

    def __getitem__(self, index):
        return super().__getitem__(_plain(index))


def pandas_indexable(matrix) -> PandasIndexCSR:
    """``matrix`` (sparse or dense) as a float32 ``PandasIndexCSR``."""
    return PandasIndexCSR(sp.csr_matrix(matrix, dtype=np.float32))


class EpochReporter:
    """Receives ``GEARS.train``'s Weights & Biases logs and reports one value per epoch, and the epochs
    done of ``total_epochs`` to ``progress``.

    Steps continue from ``first_step`` so that several GEARS models (one per cell type) report one
    increasing sequence of epochs.
    """

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
