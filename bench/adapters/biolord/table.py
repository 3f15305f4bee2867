"""The table biolord learns from in its Norman experiment, built from the harness's cells of one cell type.

biolord's Norman experiment (nitzanlab/biolord_reproducibility, commit 16bfefc,
``notebooks/perturbations/norman/1_perturbations_norman_preprocessing.ipynb``, cells 22-24) trains on one row
per single-gene perturbation and one for the control: each row the mean expression of the condition's cells,
its ordered attribute a vector of prior features of the perturbed gene (there GEARS' GO-neighbour weights),
zeros for the control. Here the features are the harness's (``gene_features``, the ones CPA and scBIG map
unseen genes from): a gene's Gene Ontology embedding next to its data-derived loadings.

That encoding, not a double's attribute as the sum of its genes' features: the experiment never shows biolord a
double, it predicts one from its singles (``adapter``), so a summed attribute would be an input biolord never
learned from, and training doubles as rows would be another model than the published one. Rows: the training
control, the training singles and the validation singles (biolord's ``split`` ``train`` and ``test``, its
validation), each part sorted by condition.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from bench.adapters.kit.gene_features import GeneFeatures
from bench.core.conditions import CONTROL, genes_of, is_single
from bench.core.errors import ModelError

ATTRIBUTE = "perturbation_features"  # an obsm key; biolord shares the network of keys containing "_rep"
SPLIT = "split"
TRAIN, VALID = "train", "test"  # Biolord's default train_split and valid_split (biolord/_model.py:88-89)


def feature_rows(features: GeneFeatures, genes: list[str]) -> np.ndarray:
    """Each gene's prior features, GO and data-derived side by side (float32; zeros where it has none)."""
    go, data = features.lookup(genes)
    return np.concatenate([go, data], axis=1)


def without_features(features: GeneFeatures, genes: list[str]) -> list[str]:
    """The ``genes`` whose features are all zero: biolord would take them for the control."""
    return [g for g, row in zip(genes, feature_rows(features, genes)) if not row.any()]


def singles(means: pd.DataFrame, features: GeneFeatures) -> pd.DataFrame:
    """The single-gene rows of ``means`` (conditions x genes) whose gene has features, sorted."""
    conditions = sorted(c for c in means.index if is_single(c))
    bare = set(without_features(features, [genes_of(c)[0] for c in conditions]))
    return means.loc[[c for c in conditions if genes_of(c)[0] not in bare]]


def build(train_means: pd.DataFrame, val_means: pd.DataFrame, features: GeneFeatures, cell_type: str) -> ad.AnnData:
    """biolord's AnnData for one cell type from its training and validation means (conditions x genes).
    Without a validation single, the training singles are validated on (as GEARS without validation cells)."""
    if CONTROL not in train_means.index:
        raise ModelError(f"biolord needs training control cells of cell type '{cell_type}': its control row is "
                         "what it predicts from")
    trained = singles(train_means, features)
    if trained.empty:
        raise ModelError(f"biolord has no training single perturbation with gene features in cell type "
                         f"'{cell_type}' to learn from (it learns from singles and predicts doubles from them)")
    validated = singles(val_means, features)
    validated = trained if validated.empty else validated
    perturbed = pd.concat([trained, validated])
    attributes = feature_rows(features, [genes_of(c)[0] for c in perturbed.index])
    attributes = np.concatenate([np.zeros((1, attributes.shape[1]), dtype=np.float32), attributes])
    means = pd.concat([train_means.loc[[CONTROL]], perturbed])
    obs = pd.DataFrame({"condition": list(means.index),
                        SPLIT: [TRAIN] * (1 + len(trained)) + [VALID] * len(validated)})
    obs.index = [f"{split}:{condition}" for split, condition in zip(obs[SPLIT], obs["condition"])]
    table = ad.AnnData(X=means.to_numpy(dtype=np.float32), obs=obs, var=pd.DataFrame(index=means.columns))
    table.obsm[ATTRIBUTE] = attributes
    return table
