"""Scoring a prediction: every pinned metric per (cell type, condition), by the same code for every model,
the data ceiling included."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from bench.core import linalg
from bench.core.conditions import CONTROL
from bench.evaluation import interaction_truth, interactions, metrics
from bench.evaluation.split_data import SplitData


def score(
    predicted: pd.DataFrame,
    observed: dict[str, pd.DataFrame],
    training: dict[str, pd.DataFrame],
    de20: dict[str, dict[str, list[str]]],
    subgroups: dict[str, str],
    predicted_cells: dict[str, ad.AnnData] | None = None,
    cells: tuple[ad.AnnData, ad.AnnData] | None = None,
    singles: dict[str, pd.DataFrame] | None = None,
    known: dict | None = None,
    axes: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Per-perturbation metrics for predictions indexed by (cell_type, condition), given per cell type
    the observed and the training means of each condition (``SplitData.means``). With predicted cells,
    also their energy distance to the observed cells (``cells``: the observed and the training cells);
    with the singles' observed means (``PreparedDataset.singles``), the interaction metrics of doubles
    (``known``: the observed doubles' scores kept between calls, see ``interactions.gi_metrics``).
    ``axes``: the training cells' ``training_axes``, for a caller that scores many times against them."""
    gene_index = pd.Index(next(iter(training.values())).columns)
    rows, arrays = [], {k: [] for k in ("pred", "obs", "ctrl", "pert", "de", "top", "label_gene")}
    for (cell_type, condition), values in predicted.iterrows():
        train_means = training[cell_type]
        control = train_means.loc[CONTROL].to_numpy()
        perturbations = train_means.drop(index=CONTROL)
        de = gene_index.get_indexer(de20[cell_type][condition])
        arrays["pred"].append(values.to_numpy())
        arrays["obs"].append(observed[cell_type].loc[condition].to_numpy())
        arrays["ctrl"].append(control)
        arrays["pert"].append(perturbations.to_numpy().mean(axis=0) if len(perturbations) else control)
        arrays["de"].append(de)
        arrays["top"].append(metrics.top_expressed(control))
        arrays["label_gene"].append(gene_index.get_indexer([condition])[0])
        rows.append((cell_type, condition, subgroups[condition]))
    evaluation = metrics.EvaluationInput(
        predicted=np.stack(arrays["pred"]),
        observed=np.stack(arrays["obs"]),
        control=np.stack(arrays["ctrl"]),
        perturbation_mean=np.stack(arrays["pert"]),
        de20=np.stack(arrays["de"]),
        top_expressed=np.stack(arrays["top"]),
        label_gene=np.array(arrays["label_gene"]),
        group=np.array([r[0] for r in rows]),
    )
    table = metrics.evaluate(evaluation)
    if singles is not None:
        found = interactions.gi_metrics([r[:2] for r in rows], evaluation.predicted, evaluation.observed,
                                        evaluation.control, singles, known)
        table = pd.concat([table, found], axis=1)
    keys = pd.DataFrame(rows, columns=["cell_type", "condition", "subgroup"])
    if predicted_cells and cells is not None:
        table["energy_distance"] = energy_distances(keys, predicted_cells, *cells, axes)
    return pd.concat([keys, table], axis=1)


def score_part(predicted: pd.DataFrame, data: SplitData, part: str, dataset,
               predicted_cells: dict[str, ad.AnnData] | None = None, subgroups: dict[str, str] | None = None
               ) -> pd.DataFrame:
    """``score`` against the cells of ``part`` (``test`` or ``val``) of a split; validation conditions
    need their ``subgroups`` (the split's ``val``); ``dataset`` gives the DE genes and the singles
    (``runner.PreparedDataset``). The observed test doubles' classes are resampled over cells
    (``interaction_truth``), and their probabilities added as columns."""
    known = interaction_truth.truths(data, part, dataset) if part == "test" else data.interactions[part]
    table = score(predicted, data.means(part), data.means("train"), dataset.de20,
                  data.subgroups if subgroups is None else subgroups, predicted_cells,
                  (getattr(data, part), data.train), dataset.singles, known)
    return pd.concat([table, interaction_truth.columns(table, known)], axis=1)


def training_axes(train_cells: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
    """Mean and principal axes (``ENERGY_PCS`` at most) of up to 5,000 training cells: the space of
    ``energy_distances``."""
    X = train_cells.X[linalg.sample_rows(train_cells.n_obs, np.random.default_rng(0))]
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
    mean, _, axes = linalg.principal_axes(X, metrics.ENERGY_PCS)
    return mean, axes


def _dense(adata: ad.AnnData) -> np.ndarray:
    return np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float64)


def energy_distances(
    keys: pd.DataFrame, predicted_cells: dict[str, ad.AnnData], observed_cells: ad.AnnData, train_cells: ad.AnnData,
    axes: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Per (cell_type, condition) row of ``keys``, the energy distance of predicted and observed cells
    in the principal components of the training cells (``axes``: their ``training_axes``, computed here
    when not given; NaN where a cell type has no predicted cells)."""
    mean, axes = training_axes(train_cells) if axes is None else axes
    rng = np.random.default_rng(0)
    values = np.full(len(keys), np.nan)
    for i, (cell_type, condition) in enumerate(zip(keys["cell_type"], keys["condition"])):
        if cell_type not in predicted_cells:
            continue
        sides = []
        for cells, obs_type in ((predicted_cells[cell_type], None), (observed_cells, cell_type)):
            mask = cells.obs["condition"].to_numpy() == condition
            if obs_type is not None:
                mask &= cells.obs["cell_type"].astype(str).to_numpy() == obs_type
            rows = np.flatnonzero(mask)
            rows = linalg.sample_rows(rows, rng, metrics.ENERGY_MAX_CELLS)
            sides.append((_dense(cells[rows]) - mean) @ axes.T)
        values[i] = metrics.energy_distance(*sides)
    return values
