"""Validation conditions per cell type, the shape in which models that predict counterfactually from
control cells validate during training (CPA, scBIG)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.core.api import TrainData
from bench.core.conditions import CONTROL
from bench.core.pseudobulk import group_means


@dataclass
class ValidationTarget:
    """One cell type's perturbed validation conditions (sorted) and their observed means (float64)."""

    cell_type: str
    conditions: list[str]
    means: np.ndarray


def validation_targets(train: TrainData) -> list[ValidationTarget]:
    """Per cell type of the perturbed validation cells (sorted): its conditions and their observed means."""
    val = train.val[train.val.obs["condition"].astype(str) != CONTROL]
    targets = []
    for cell_type in sorted(val.obs["cell_type"].astype(str).unique()):
        subset = val[val.obs["cell_type"].astype(str) == cell_type]
        labels, means = group_means(subset.X, subset.obs["condition"].astype(str))
        targets.append(ValidationTarget(cell_type, list(labels), means))
    return targets
