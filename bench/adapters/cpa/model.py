"""The CPA-style adapter: one class behind the ``cpa`` and ``latent_additive`` cards.

Model (CPA; Lotfollahi et al., Mol Syst Biol 2023): encoder from a cell's log-normalised expression to
a basal latent; one embedding per perturbed gene, summed for a combination; a learned cell-type
embedding (CPA's covariate); both added to the basal latent and decoded. ``adversary_weight > 0`` adds
CPA's adversarial classifiers; ``adversary_weight = 0`` with ``encoder_input = "control"`` is
PerturBench's latent additive model (Wu et al. 2024). Prediction is counterfactual: the query's control
cells (at most ``max_cells``, a seeded subsample) are encoded, the combination's embedding is added,
and the decoded cells and their mean are returned.

Rules:
- Gene embeddings (``network``, ``features``): ``free(g) + A·go(g) + B·data(g)``. Genes never perturbed
  in training have no free vector; ``go`` is their Gene Ontology embedding (``train.gene_knowledge``),
  ``data`` their row of a PCA of the training pseudobulk when measured; a gene with neither gets the
  mean embedding of the training genes. Unseen genes are predicted, never skipped.
- Likelihood: ``auto`` takes the negative binomial on ``layers['counts']`` when the training cells
  have it, else the Gaussian (MSE on ``X``); see ``likelihood`` for the return to log-normalised space.
- Cell types: one embedding each; a cell type absent from training gets none (zero).
- Determinism: weights, dropout and residual masks draw from torch's global generator, seeded with
  ``train.seed`` inside ``torch.random.fork_rng`` (the caller's state is restored); minibatches and
  control pairings from ``numpy.random.default_rng(train.seed)``; NB draws at prediction from a
  ``torch.Generator`` seeded with ``query.seed``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bench.adapters.cpa.inference import Vocabulary, counterfactual
from bench.adapters.cpa.network import Adversary, CPANetwork
from bench.adapters.cpa.params import CPAParams
from bench.adapters.cpa.training import TrainingSet, Validation
from bench.adapters.cpa.training import train as train_network
from bench.adapters.kit.counterfactual_cells import cells_anndata, starting_rows
from bench.adapters.kit.gene_features import GeneFeatures
from bench.adapters.kit.torch_adapter import TorchAdapter
from bench.adapters.kit.torch_runtime import dense_rows
from bench.adapters.kit.validation import validation_targets
from bench.core import linalg
from bench.core.api import DataProperties, Prediction, PredictQuery, TrainData
from bench.core.conditions import CONTROL, perturbed_genes
from bench.core.errors import ModelError

NB_NEEDS_COUNTS = "likelihood 'nb' needs a counts layer (layers['counts']); use 'auto' or 'gaussian'"


class CPAModel(TorchAdapter):
    """Parameters: ``CPAParams``. Skips data without raw counts when ``likelihood`` is ``nb``."""

    Params = CPAParams

    @classmethod
    def skip(cls, params: CPAParams, data: DataProperties) -> str | None:
        return NB_NEEDS_COUNTS if params.likelihood == "nb" and not data.counts else None

    def _fit(self, train: TrainData) -> None:
        params, cells = self.params, train.cells
        free = sorted(perturbed_genes(train.conditions))
        if not free:
            raise ModelError("the CPA model needs perturbed training conditions; the training cells have none")
        has_counts = "counts" in cells.layers
        if params.likelihood == "nb" and not has_counts:
            raise ModelError(NB_NEEDS_COUNTS)
        nb = params.likelihood == "nb" or (params.likelihood == "auto" and has_counts)
        self.genes, self.device = train.genes, train.device
        cell_types = sorted(cells.obs["cell_type"].astype(str).unique())
        features = GeneFeatures.fit(train, free, params.n_components)
        self.vocabulary = Vocabulary(free, features, cell_types, self.device)
        conditions = sorted(cells.obs["condition"].astype(str).unique())
        condition = pd.Categorical(cells.obs["condition"].astype(str), categories=conditions).codes.astype(np.int64)
        cell_type = pd.Categorical(cells.obs["cell_type"].astype(str), categories=cell_types).codes.astype(np.int64)
        control = np.flatnonzero(condition == conditions.index(CONTROL)) if CONTROL in conditions else np.arange(0)
        if not len(control) and params.encoder_input == "control":
            raise ModelError("encoder_input 'control' needs control cells in training; use encoder_input 'cell'")
        counts = cells.layers["counts"] if nb else None
        self.library = float(np.median(np.asarray(counts.sum(axis=1)))) if nb else 1.0
        data = TrainingSet(cells.X, counts, conditions, condition, cell_type, control)
        rng = train.rng()
        self.net = CPANetwork(len(self.genes), params.latent_dim, params.hidden_dim, params.n_layers, params.dropout,
                              len(free), features.go_dim, features.data_dim, len(cell_types), nb).to(self.device)
        adversary = None
        if params.adversary_weight > 0:
            adversary = Adversary(params.latent_dim, params.adversary_hidden, len(free), len(cell_types))
            adversary = adversary.to(self.device)
        validation = self._validation(train, data, rng)
        train_network(self.net, adversary, self.vocabulary, data, validation, params, rng, train.report, train.progress)

    def _validation(self, train: TrainData, data: TrainingSet, rng: np.random.Generator) -> Validation | None:
        """Validation conditions per cell type, predicted from up to ``max_cells`` training controls."""
        targets = validation_targets(train)
        if not targets or not len(data.control):
            return None
        groups = []
        for target in targets:
            types = self.vocabulary.cell_types
            code = types.index(target.cell_type) if target.cell_type in types else -1
            pool = data.control[data.cell_type[data.control] == code]
            rows = linalg.sample_rows(pool if len(pool) else data.control, rng, self.params.max_cells)
            observed = torch.from_numpy(target.means.astype(np.float32)).to(self.device)
            groups.append((target.cell_type, target.conditions, dense_rows(data.x, rows, self.device),
                           self._library(data.counts, rows), observed))
        return Validation(groups, train.seed)

    def _library(self, counts, rows: np.ndarray) -> torch.Tensor:
        """Total counts of the starting cells (the training median when there is no counts layer)."""
        values = np.full(len(rows), self.library) if counts is None else np.asarray(counts[rows].sum(axis=1)).ravel()
        return torch.from_numpy(values.astype(np.float32)).to(self.device)

    def _predict(self, query: PredictQuery) -> Prediction:
        control = query.control
        rows = starting_rows(query, self.genes, self.params.max_cells)
        counts = control.layers["counts"] if "counts" in control.layers and self.net.log_theta is not None else None
        x = dense_rows(control.X, rows, self.device)
        cells, means = counterfactual(self.net, self.vocabulary, x, self._library(counts, rows), query.cell_type,
                                      query.conditions, query.seed)
        return Prediction(means=pd.DataFrame(means, index=query.conditions, columns=self.genes),
                          cells=cells_anndata(cells, query, self.genes))
