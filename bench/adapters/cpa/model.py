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

from bench.adapters.counterfactual_cells import cells_anndata, starting_rows
from bench.adapters.cpa.inference import Vocabulary, counterfactual
from bench.adapters.cpa.network import Adversary, CPANetwork
from bench.adapters.cpa.training import Settings, TrainingSet, Validation
from bench.adapters.cpa.training import train as train_network
from bench.adapters.gene_features import GeneFeatures
from bench.adapters.torch_runtime import dense_rows, seeded_torch, torch_threads
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import CONTROL, perturbed_genes
from bench.core.errors import ModelError
from bench.core.pseudobulk import group_means

LIKELIHOODS = ("auto", "gaussian", "nb")
ENCODER_INPUTS = ("cell", "control")


class CPAModel:
    """Parameters: ``latent_dim``; ``hidden_dim`` and ``n_layers`` of encoder and decoder (0: linear);
    ``dropout``; Adam's ``learning_rate``; ``batch_size``; at most ``epochs``, stopping after ``patience``
    epochs without a better validation MSE; ``adversary_weight`` (0: no adversary) and the adversary's
    ``adversary_hidden``; ``encoder_input`` ``cell`` (CPA) or ``control`` (latent additive);
    ``residual_dropout``; ``n_components`` of the data-derived gene features; ``likelihood`` ``auto``,
    ``gaussian`` or ``nb``; ``max_cells`` control cells per query to start from."""

    def __init__(self, latent_dim: int = 64, hidden_dim: int = 256, n_layers: int = 1, dropout: float = 0.1,
                 learning_rate: float = 1e-3, batch_size: int = 128, epochs: int = 200, patience: int = 20,
                 adversary_weight: float = 30.0, adversary_hidden: int = 128, encoder_input: str = "cell",
                 residual_dropout: float = 0.25, n_components: int = 10, likelihood: str = "auto",
                 max_cells: int = 256, threads: int = 0):
        sizes = (latent_dim, hidden_dim, batch_size, patience, adversary_hidden, n_components, max_cells)
        if n_layers < 0 or threads < 0 or min(sizes) < 1:
            raise ValueError("n_layers and threads must be >= 0; sizes, batch_size, patience, max_cells etc. >= 1")
        if epochs < 0 or learning_rate <= 0 or adversary_weight < 0:
            raise ValueError("epochs and adversary_weight must be >= 0 and learning_rate > 0")
        if not (0 <= dropout < 1 and 0 <= residual_dropout < 1):
            raise ValueError("dropout and residual_dropout must be in [0, 1)")
        if likelihood not in LIKELIHOODS or encoder_input not in ENCODER_INPUTS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, encoder_input one of {ENCODER_INPUTS}")
        self.sizes = dict(latent=latent_dim, hidden=hidden_dim, layers=n_layers, dropout=dropout)
        self.adversary_hidden = adversary_hidden
        self.settings = Settings(epochs, batch_size, learning_rate, adversary_weight, residual_dropout, patience,
                                 encoder_input)
        self.n_components = n_components
        self.likelihood = likelihood
        self.max_cells = max_cells
        self.threads = threads

    def fit(self, train: TrainData) -> None:
        with torch_threads(self.threads):
            self._fit(train)

    def _fit(self, train: TrainData) -> None:
        cells = train.cells
        free = sorted(perturbed_genes(train.conditions))
        if not free:
            raise ModelError("the CPA model needs perturbed training conditions; the training cells have none")
        has_counts = "counts" in cells.layers
        if self.likelihood == "nb" and not has_counts:
            raise ModelError("likelihood 'nb' needs a counts layer (layers['counts']); use 'auto' or 'gaussian'")
        nb = self.likelihood == "nb" or (self.likelihood == "auto" and has_counts)
        self.genes, self.device = train.genes, train.device
        cell_types = sorted(cells.obs["cell_type"].astype(str).unique())
        self.vocabulary = Vocabulary(free, GeneFeatures.fit(train, free, self.n_components), cell_types, self.device)
        conditions = sorted(cells.obs["condition"].astype(str).unique())
        condition = pd.Categorical(cells.obs["condition"].astype(str), categories=conditions).codes.astype(np.int64)
        cell_type = pd.Categorical(cells.obs["cell_type"].astype(str), categories=cell_types).codes.astype(np.int64)
        control = np.flatnonzero(condition == conditions.index(CONTROL)) if CONTROL in conditions else np.arange(0)
        if not len(control) and self.settings.encoder_input == "control":
            raise ModelError("encoder_input 'control' needs control cells in training; use encoder_input 'cell'")
        counts = cells.layers["counts"] if nb else None
        self.library = float(np.median(np.asarray(counts.sum(axis=1)))) if nb else 1.0
        data = TrainingSet(cells.X, counts, conditions, condition, cell_type, control)
        rng = train.rng()
        with seeded_torch(train.seed, self.device):
            self.net = CPANetwork(len(self.genes), self.sizes["latent"], self.sizes["hidden"], self.sizes["layers"],
                                  self.sizes["dropout"], len(free), self.vocabulary.features.go_dim,
                                  self.vocabulary.features.data_dim, len(cell_types), nb).to(self.device)
            adversary = None
            if self.settings.adversary_weight > 0:
                adversary = Adversary(self.sizes["latent"], self.adversary_hidden, len(free),
                                      len(cell_types)).to(self.device)
            validation = self._validation(train, data, rng)
            train_network(self.net, adversary, self.vocabulary, data, validation, self.settings, rng, train.report,
                          train.progress)

    def _validation(self, train: TrainData, data: TrainingSet, rng: np.random.Generator) -> Validation | None:
        """Validation conditions per cell type, predicted from up to ``max_cells`` training controls."""
        val = train.val[train.val.obs["condition"].astype(str) != CONTROL]
        if not val.n_obs or not len(data.control):
            return None
        groups = []
        for cell_type in sorted(val.obs["cell_type"].astype(str).unique()):
            subset = val[val.obs["cell_type"].astype(str) == cell_type]
            labels, means = group_means(subset.X, subset.obs["condition"].astype(str))
            code = self.vocabulary.cell_types.index(cell_type) if cell_type in self.vocabulary.cell_types else -1
            pool = data.control[data.cell_type[data.control] == code]
            pool = pool if len(pool) else data.control
            rows = np.sort(rng.choice(pool, size=min(self.max_cells, len(pool)), replace=False))
            library = self._library(data.counts, rows)
            observed = torch.from_numpy(means.astype(np.float32)).to(self.device)
            groups.append((cell_type, list(labels), dense_rows(data.x, rows, self.device), library, observed))
        return Validation(groups, train.seed)

    def _library(self, counts, rows: np.ndarray) -> torch.Tensor:
        """Total counts of the starting cells (the training median when there is no counts layer)."""
        values = np.full(len(rows), self.library) if counts is None else np.asarray(counts[rows].sum(axis=1)).ravel()
        return torch.from_numpy(values.astype(np.float32)).to(self.device)

    def predict(self, query: PredictQuery) -> Prediction:
        with torch_threads(self.threads):
            return self._predict(query)

    def _predict(self, query: PredictQuery) -> Prediction:
        control = query.control
        rows = starting_rows(query, self.genes, self.max_cells)
        counts = control.layers["counts"] if "counts" in control.layers and self.net.log_theta is not None else None
        x = dense_rows(control.X, rows, self.device)
        cells, means = counterfactual(self.net, self.vocabulary, x, self._library(counts, rows), query.cell_type,
                                      query.conditions, query.seed)
        return Prediction(means=pd.DataFrame(means, index=query.conditions, columns=self.genes),
                          cells=cells_anndata(cells, query, self.genes))

