"""The latent ceiling: how much of the validation effects a latent space can represent at all.

The validation cells of each condition are encoded and decoded, and the mean of the reconstructions
is scored as a prediction would be: Pearson correlation of its change from the training controls'
mean with the observed change, on all genes and on the 20 genes of largest observed change (the
release's DE definition, ``train_norman_additive.py``). A flow in a latent can predict no better than
its latent reconstructs; the same number for a PCA of the training cells says whether the encoder
loses what a linear map keeps. Recorded with every scBIG run as ``diagnostic/<latent>_ceiling_*``.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.adapters.kit.torch_runtime import dense_rows
from bench.adapters.scbig.latent import LatentSpace
from bench.core.conditions import CONTROL
from bench.core.pseudobulk import group_means
from bench.evaluation.metrics import rowwise_pearson

TOP_CHANGED = 20


def reconstructed_means(latent: LatentSpace, x, labels: np.ndarray, conditions: list[str]) -> np.ndarray:
    """Per condition, the mean of the decoded latents of its cells (rows of ``x`` with that label)."""
    means = []
    with torch.no_grad():
        for condition in conditions:
            rows = np.flatnonzero(labels == condition)
            z = latent.encode(x[rows])
            means.append(latent.decode(z).mean(dim=0).cpu().numpy())
    return np.stack(means)


def ceiling(latents: dict[str, LatentSpace], train, val) -> dict[str, float]:
    """``{<name>_ceiling_pearson_delta, <name>_ceiling_pearson_delta_de20}`` for each latent, averaged over
    the validation conditions of every cell type (empty without validation conditions)."""
    scores: dict[str, list[np.ndarray]] = {}
    val_types = val.obs["cell_type"].astype(str).to_numpy()
    val_conditions = val.obs["condition"].astype(str).to_numpy()
    for cell_type in sorted(set(val_types)):
        in_type = (val_types == cell_type) & (val_conditions != CONTROL)
        controls = (train.obs["cell_type"].astype(str).to_numpy() == cell_type) & (
            train.obs["condition"].astype(str).to_numpy() == CONTROL)
        if not in_type.any() or not controls.any():
            continue
        x = val.X[np.flatnonzero(in_type)]
        labels, observed = group_means(x, val_conditions[in_type])
        control = dense_rows(train.X, np.flatnonzero(controls), "cpu").double().mean(dim=0).numpy()
        change = np.asarray(observed, dtype=np.float64) - control
        top = np.argsort(-np.abs(change), axis=1, kind="stable")[:, :TOP_CHANGED]
        for name, latent in latents.items():
            predicted = reconstructed_means(latent, x, val_conditions[in_type], list(labels)) - control
            take = np.take_along_axis
            scores.setdefault(f"{name}_ceiling_pearson_delta", []).append(rowwise_pearson(predicted, change))
            scores.setdefault(f"{name}_ceiling_pearson_delta_de20", []).append(
                rowwise_pearson(take(predicted, top, axis=1), take(change, top, axis=1)))
    return {name: float(np.mean(np.concatenate(values))) for name, values in scores.items()}
