"""The scBIG adapter (Ruan et al., ICML 2026, arXiv 2602.04901), behind the ``scbig`` card and its
ablations ``scbig_pca_latent``, ``scbig_random_clusters`` and ``scbig_no_structure_loss``; its
correspondence with the official release is ``docs/scbig.md``.

``fit``: cluster the genes (``clustering``), fit the latent (GCAE or PCA, ``pretrain``) and record its
ceiling (``ceiling``), train the conditional flow from training controls to every training condition
(``training``). ``predict``: encode up to ``max_cells`` of the query's control cells, solve the flow's
ODE under each queried condition, decode; unseen genes are predicted from their prior features.

Determinism: weights and dropout draw from torch's global generator, seeded with ``train.seed`` inside
``torch.random.fork_rng`` (the caller's state is restored); the flow's sampling from a generator and
``numpy.random.default_rng(train.seed)``; GRC from its fixed seed 42 (official); the query's cells
from ``query.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.adapters.kit.counterfactual_cells import cells_anndata, starting_rows
from bench.adapters.kit.torch_runtime import seeded_torch, torch_threads
from bench.adapters.scbig.ceiling import ceiling
from bench.adapters.scbig.clustering import ClusteringSettings, cluster_genes
from bench.adapters.scbig.encoder import EncoderSettings
from bench.adapters.scbig.flow import ConditionalFlow, ConditionalFlowSettings
from bench.adapters.scbig.latent import LatentSpace
from bench.adapters.scbig.pretrain import PretrainSettings, fit_latent, pca_latent
from bench.adapters.scbig.priors import ConditionFeatures, PriorSettings, embeddings, pathways, relation_graph
from bench.adapters.scbig.settings import build, check, setting, signature
from bench.adapters.scbig.training import (
    FlowData,
    FlowSettings,
    Structure,
    StructureSettings,
    cell_groups,
    predict_cells,
    train_flow,
    validation_groups,
)
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import perturbed_genes
from bench.core.errors import ModelError

CEILING_PCS = 50


@dataclass(frozen=True)
class RunSettings:
    """``max_cells`` control cells per query; ``threads`` torch threads (0 = unchanged)."""

    max_cells: int = setting(500, ">= 1")
    threads: int = setting(0, ">= 0")

    def __post_init__(self):
        check(self)


GROUPS = (ClusteringSettings, EncoderSettings, PretrainSettings, ConditionalFlowSettings, FlowSettings,
          StructureSettings, PriorSettings, RunSettings)


class ScBIGModel:
    """Parameters: flat, as the card names them (the ``paper`` preset holds the official values); each
    component receives its group of them, described there (``GROUPS``)."""

    __signature__ = signature(GROUPS)

    def __init__(self, **params):
        (self.clustering, self.encoder, self.pretraining, self.network, self.training, self.structure,
         self.priors, self.run) = build(GROUPS, params)

    def fit(self, train: TrainData) -> None:
        with torch_threads(self.run.threads):
            self._fit(train)

    def _fit(self, train: TrainData) -> None:
        cells = train.cells
        perturbed = sorted(perturbed_genes(train.conditions))
        if not perturbed:
            raise ModelError("scBIG needs perturbed training conditions; the training cells have none")
        groups, controls = cell_groups(cells)
        if not controls:
            raise ModelError("scBIG flows from control cells; the training cells have no controls")
        self.genes, self.device = train.genes, train.device
        rng = train.rng()
        with seeded_torch(train.seed, self.device):
            train.progress("gene priors")
            vectors = embeddings(train, self.priors, rng)
            self.labels = cluster_genes(self.clustering, vectors.clustering, lambda: relation_graph(train, self.priors),
                                        self.genes, train.progress)
            autoencoder = fit_latent(train, self.labels, vectors.positional, self.encoder, self.pretraining, rng)
            self.latent = LatentSpace(autoencoder, self.device)
            pca = LatentSpace(pca_latent(cells.X, CEILING_PCS, rng, self.device), self.device)
            train.diagnostics.update(ceiling({"latent": self.latent, f"pca{CEILING_PCS}": pca}, cells, train.val))
            data = FlowData(self.latent.encode(cells.X), cells.X, groups, controls)
            train.progress("condition features")
            features = ConditionFeatures(train, perturbed, self.priors)
            self.flow = ConditionalFlow(features, sorted(controls), data.z.shape[1], **self.network.sizes())
            self.flow = self.flow.to(self.device)
            sets = pathways(train, self.priors) if self.structure.pathway_weight else []
            structure = Structure.of(self.labels, sets, self.structure, self.device)
            validation = validation_groups(train.val, data, self.training.eval_cells, rng)
            alignment = train_flow(self.flow, self.latent, data, structure, validation, self.training, rng,
                                   train.report, self.device, train.progress)
            train.diagnostics["structure_steps_skipped"] = alignment.skipped

    def predict(self, query: PredictQuery) -> Prediction:
        with torch_threads(self.run.threads):
            return self._predict(query)

    def _predict(self, query: PredictQuery) -> Prediction:
        rows = starting_rows(query, self.genes, self.run.max_cells)
        z0 = self.latent.encode(query.control.X[rows])
        cells = []
        for i, condition in enumerate(query.conditions):
            query.progress("solving the flow", i, len(query.conditions))
            cells.append(predict_cells(self.flow, self.latent, z0, condition, query.cell_type, self.training.rtol,
                                       self.training.atol).cpu().numpy())
        cells = np.stack(cells)
        return Prediction(means=pd.DataFrame(cells.mean(axis=1), index=query.conditions, columns=self.genes),
                          cells=cells_anndata(cells, query, self.genes))
