"""biolord trained and queried as its Norman perturbation experiment does (nitzanlab/biolord_reproducibility,
commit 16bfefc, ``scripts/biolord/norman/base_experiment_norman.py``), one model per cell type as GEARS' adapter (that
experiment has one cell line; a categorical cell-type attribute would be a model its authors did not run).

biolord learns from ``table``: one row per training single and the control, each row's ordered attribute the
perturbed gene's prior features. Through its public API (``Biolord.setup_anndata``, ``Biolord(...)``,
``Biolord.train``) with the card's parameters and the run's seed, validated on the validation singles (biolord's
``split_key``), fenced by ``isolated``. Predicting, as that script does:

- a condition observed in training: its training mean;
- an unseen single: biolord's expression for the control row with the attribute swapped for the gene's
  features (``Biolord.get_dataset`` of the control row, ``module.get_expression``);
- a double (or more genes): its genes' singles (observed if trained, else predicted) added, less the control
  mean once for every gene past the first.

The query's control cells are not read: biolord predicts from its own control row (it has no per-cell latent
for cells it did not train on), so no cells are returned. A gene without features (unannotated and unmeasured)
has the control's attribute: its training single is left out of biolord's rows and an unseen one gets biolord's
expression for the control's attribute, with a notice.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from bench.adapters.biolord import compat, table
from bench.adapters.biolord.params import CONSTRUCTOR, MODULE, PLAN, TRAIN, BiolordParams
from bench.adapters.kit.base import Adapter
from bench.adapters.kit.effects import prediction
from bench.adapters.kit.gene_features import GeneFeatures
from bench.adapters.kit.torch_runtime import torch_threads
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import CONTROL, genes_of, is_single, perturbed_genes
from bench.core.errors import BenchWarning, ModelError
from bench.core.isolated_import import isolated
from bench.core.pseudobulk import pseudobulk

MODULES = ("biolord", "lightning.pytorch")


class FittedBiolord(NamedTuple):
    """One cell type's trained ``biolord.Biolord``, its training means per condition, its control row."""

    model: object
    observed: pd.DataFrame
    control_rows: np.ndarray


def _notice(genes: list[str], what: str) -> None:
    if genes:
        warnings.warn(f"biolord: gene(s) {', '.join(genes)} have no Gene Ontology annotation and are not measured, "
                      f"so no features; {what}", BenchWarning)


def _cell_type_means(bulk: pd.DataFrame | None, cell_type: str, genes: list[str]) -> pd.DataFrame:
    if bulk is None or cell_type not in bulk.index.get_level_values("cell_type"):
        return pd.DataFrame(columns=genes, dtype=np.float64)
    return bulk.xs(cell_type, level="cell_type")


class BiolordModel(Adapter):
    Params = BiolordParams

    def fit(self, train: TrainData) -> None:
        params, conditions = self.params, train.conditions
        self.genes, self.models = train.genes, {}
        self.features = GeneFeatures.fit(train, sorted(perturbed_genes(conditions)), params.n_components)
        if not self.features.go_dim + self.features.data_dim:
            raise ModelError("biolord needs prior features of the perturbed genes, and there are none: fewer than 2 "
                             "genes perturbed in training are annotated or measured; bench data fetch gene_ontology")
        trained_genes = sorted({genes_of(c)[0] for c in conditions if is_single(c)})
        _notice(table.without_features(self.features, trained_genes), "their training singles are left out")
        bulk = train.pseudobulk()
        val_bulk = pseudobulk(train.val) if train.val.n_obs else None
        cell_types = sorted(bulk.index.unique("cell_type"))
        for number, cell_type in enumerate(cell_types):
            observed = bulk.xs(cell_type, level="cell_type")
            adata = table.build(observed, _cell_type_means(val_bulk, cell_type, train.genes), self.features, cell_type)
            model = self._train(adata, train, number * params.max_epochs, len(cell_types) * params.max_epochs)
            self.models[cell_type] = FittedBiolord(model, observed, np.flatnonzero(adata.obs["condition"] == CONTROL))

    def _train(self, adata, train: TrainData, first_epoch: int, total_epochs: int):
        params = self.params
        rows = int((adata.obs[table.SPLIT] == table.TRAIN).sum())
        if params.use_batch_norm and rows % params.batch_size == 1:
            raise ModelError(f"biolord's batch norm cannot train on a last batch of one row ({rows} rows, batch_size "
                             f"{params.batch_size}); choose another batch_size or use_batch_norm=false")
        with (tempfile.TemporaryDirectory(prefix="bench-biolord-") as scratch, torch_threads(params.threads),
              compat.torch_flags(), isolated(train.seed, Path(scratch), *MODULES) as (biolord, lightning)):
            biolord.Biolord.setup_anndata(adata, ordered_attributes_keys=[table.ATTRIBUTE])
            model = biolord.Biolord(adata, **params.group(CONSTRUCTOR), split_key=table.SPLIT,
                                    module_params={**params.group(MODULE), "seed": train.seed})
            reporter = compat.epoch_reporter(lightning.Callback, train.report, train.progress, first_epoch,
                                             total_epochs)
            model.train(**params.group(TRAIN), plan_kwargs=params.group(PLAN), **compat.accelerator(train.device),
                        enable_checkpointing=False, enable_progress_bar=False, callbacks=[reporter])
        model.trainer = None  # Lightning's trainer holds the data loaders and the harness's callbacks
        return model

    def predict(self, query: PredictQuery) -> Prediction:
        fitted = self.models.get(query.cell_type)
        if fitted is None:
            raise ModelError(f"biolord was not trained on cell type '{query.cell_type}' (one model per cell type)")
        if query.genes != self.genes:
            raise ModelError("biolord was trained on other genes than the query's")
        observed = fitted.observed
        trained = set(observed.index)  # a single's condition is its gene
        unseen = sorted({g for c in query.conditions if c not in trained for g in genes_of(c)} - trained)
        _notice(table.without_features(self.features, unseen), "they are predicted as the control")
        predicted = self._singles(fitted, unseen, query.seed)
        control = observed.loc[CONTROL].to_numpy()
        means = {}
        for condition in query.conditions:
            if condition in observed.index:
                means[condition] = observed.loc[condition].to_numpy()
                continue
            parts = [observed.loc[g].to_numpy() if g in observed.index else predicted[g] for g in genes_of(condition)]
            means[condition] = sum(parts[1:], parts[0]) - (len(parts) - 1) * control if len(parts) > 1 else parts[0]
        return prediction(query, means)

    def _singles(self, fitted: FittedBiolord, genes: list[str], seed: int) -> dict[str, np.ndarray]:
        """biolord's mean expression of each unseen single: its control row with the gene's features."""
        if not genes:
            return {}
        attributes = table.feature_rows(self.features, genes)
        model, rows, out = fitted.model, fitted.control_rows, {}
        with (tempfile.TemporaryDirectory(prefix="bench-biolord-") as scratch, torch_threads(self.params.threads),
              compat.torch_flags(), isolated(seed, Path(scratch), *MODULES)):
            batch = model.get_dataset(indices=rows)
            for gene, attribute in zip(genes, attributes):
                inputs = {**batch, table.ATTRIBUTE: torch.from_numpy(attribute).view(1, -1).repeat(len(rows), 1)}
                expression, _ = model.module.get_expression(inputs)
                out[gene] = expression.cpu().numpy().reshape(len(rows), -1).mean(axis=0)  # one row: squeezed
        return out
