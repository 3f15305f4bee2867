"""A run's predictions as ``.h5ad`` files that scanpy and cell-eval read as they are; tracking writes them
as run artifacts and ``bench score`` reads them back (recognised by ``uns['bench']``).

``predictions.h5ad``: one row per test (cell_type, condition) with its predicted mean, and one control
row per cell type; ``layers['observed']`` holds the observed means of the same rows. ``predicted_cells.h5ad``
(models that return cells): the predicted cells and the query control cells in cell-eval's layout, the
perturbation in ``obs['target']`` and the control labelled ``non-targeting``, the defaults of cell-eval's
``MetricsEvaluator`` (``pert_col``, ``control_pert``: cell-eval 0.8.2, ``cell_eval/_evaluator.py``).
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from bench.core import h5ad
from bench.core.api import RunResult
from bench.core.conditions import CONTROL
from bench.evaluation.metric_catalog import METRICS_VERSION

MEANS = "predictions.h5ad"
CELLS = "predicted_cells.h5ad"
KEY = "bench"  # uns[KEY]: what the file is and which run made it
CONTROL_SUBGROUP = "control"  # obs['subgroup'] of the control rows of the means file
PERT_COL = "target"  # cell-eval's MetricsEvaluator default pert_col
CONTROL_PERT = "non-targeting"  # cell-eval's MetricsEvaluator default control_pert

MEANS_X = ("predicted mean log-normalised expression of each test condition (obs['condition'], test subgroup in "
           "obs['subgroup']) per cell type; rows of subgroup 'control' (condition 'ctrl') hold the mean of the "
           "held-out query control cells of that cell type, the cells the model predicted from")
MEANS_OBSERVED = ("layers['observed']: the observed mean log-normalised expression of the same rows over the test "
                  "cells of each condition; control rows: the same query-control mean as in X (bench's metrics "
                  "measure change from the training control mean)")
CELLS_X = (f"predicted log-normalised expression of single cells (obs['{PERT_COL}']: the test condition) and the "
           f"held-out query control cells they were predicted from (obs['{PERT_COL}'] == '{CONTROL_PERT}'); "
           "values as the model returned them")
CELL_EVAL = (f"cell_eval.MetricsEvaluator(adata_pred=<this file>, adata_real=<observed cells in the same layout>): "
             f"its defaults pert_col='{PERT_COL}' and control_pert='{CONTROL_PERT}' fit; one cell type at a time; "
             "cell-eval refuses negative values, clip them at 0 first")


def provenance(result: RunResult) -> dict[str, str | int]:
    """The run a file comes from, as ``uns`` can store it (strings and numbers only)."""
    return {"model": result.model, "card_sha256": result.card_hash, "preset": result.preset or "default",
            "dataset": result.dataset, "dataset_sha256": result.dataset_sha256, "split": result.split,
            "split_sha256": result.split_hash, "seed": int(result.seed), "metrics_version": METRICS_VERSION}


def _categorical(values, first: str | None = None) -> pd.Categorical:
    """``values`` as a categorical with sorted categories, ``first`` (a control label) first when present."""
    values = list(values)
    categories = sorted(set(values) - {first})
    return pd.Categorical(values, categories=[first, *categories] if first in values else categories)


def means_file(result: RunResult) -> ad.AnnData:
    """``predictions.h5ad`` of a run with predictions: per cell type its control row, then its test conditions."""
    genes = list(result.predictions.columns)
    obs, predicted, observed = [], [], []
    for cell_type in result.predictions.index.unique("cell_type"):
        control = result.control_means[cell_type].loc[CONTROL].to_numpy()
        means = result.predictions.xs(cell_type, level="cell_type")
        conditions = list(means.index)
        obs += [(cell_type, CONTROL, CONTROL_SUBGROUP)] + [(cell_type, c, result.subgroups[c]) for c in conditions]
        predicted += [control[None], means.to_numpy()]
        observed += [control[None], result.observed_means[cell_type].loc[conditions, genes].to_numpy()]
    cell_types, conditions, subgroups = (list(column) for column in zip(*obs))
    frame = pd.DataFrame({"condition": _categorical(conditions, CONTROL),
                          "subgroup": _categorical(subgroups, CONTROL_SUBGROUP),
                          "cell_type": _categorical(cell_types)},
                         index=[f"{ct}/{c}" for ct, c in zip(cell_types, conditions)])
    return ad.AnnData(X=np.concatenate(predicted).astype(np.float32), obs=frame, var=pd.DataFrame(index=genes),
                      layers={"observed": np.concatenate(observed).astype(np.float32)},
                      uns={KEY: {"kind": "means", **provenance(result), "X": MEANS_X, "observed": MEANS_OBSERVED}})


def cells_file(result: RunResult) -> ad.AnnData:
    """``predicted_cells.h5ad`` of a run whose model returned cells: per cell type its predicted cells,
    then the query control cells. X is one float32 matrix filled part by part (no intermediate copies)."""
    parts = []  # (cell types, labels, obs names, matrix)
    for cell_type in sorted(result.predicted_cells):
        cells = result.predicted_cells[cell_type]
        labels = cells.obs["condition"].astype(str).to_numpy()
        number = pd.Series(labels).groupby(labels).cumcount().to_numpy()
        names = [f"{cell_type}/{c}/{n}" for c, n in zip(labels, number)]
        parts.append((np.full(len(labels), cell_type), labels, names, cells.X))
    controls = result.control_cells
    parts.append((controls.obs["cell_type"].astype(str).to_numpy(), np.full(controls.n_obs, CONTROL_PERT),
                  list(controls.obs_names), controls.X))
    X = np.empty((sum(len(part[1]) for part in parts), controls.n_vars), dtype=np.float32)
    start = 0
    for _, labels, _, matrix in parts:
        X[start:start + len(labels)] = matrix.toarray() if hasattr(matrix, "toarray") else matrix
        start += len(labels)
    obs = pd.DataFrame({PERT_COL: _categorical(np.concatenate([part[1] for part in parts]), CONTROL_PERT),
                        "cell_type": _categorical(np.concatenate([part[0] for part in parts]))},
                       index=[name for part in parts for name in part[2]])
    uns = {"kind": "cells", **provenance(result), "X": CELLS_X, "pert_col": PERT_COL, "control_pert": CONTROL_PERT,
           "cell_eval": CELL_EVAL}
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=controls.var_names), uns={KEY: uns})


def write(result: RunResult, folder: Path) -> list[Path]:
    """Write the prediction files of ``result`` into ``folder`` (none without predictions); return them."""
    if result.predictions is None:
        return []
    written = [folder / MEANS]
    h5ad.write(written[0], means_file(result))
    if result.predicted_cells:
        written.append(folder / CELLS)
        h5ad.write(written[1], cells_file(result))
    return written


def kind(adata: ad.AnnData) -> str | None:
    """``means`` or ``cells`` for a file written here, None for any other."""
    info = adata.uns.get(KEY)
    return info.get("kind") if isinstance(info, dict) else None
