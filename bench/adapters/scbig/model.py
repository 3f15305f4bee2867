"""The scBIG adapter (Ruan et al., ICML 2026, arXiv 2602.04901), behind the ``scbig`` card and its
ablations ``scbig_pca_latent``, ``scbig_random_clusters`` and ``scbig_no_structure_loss``; its
correspondence with the official release is ``docs/scbig.md``.

``fit``: cluster the genes (``clustering``), fit the latent (GCAE or PCA, ``pretrain``) and record its
ceiling (``ceiling``), train the conditional flow from training controls to every training condition
(``training``). ``predict``: encode up to ``max_cells`` of the query's control cells, solve the flow's
ODE under each queried condition, decode; unseen genes are predicted from their prior features.

Determinism: weights and dropout draw from torch's global generator, seeded with ``train.seed`` for
``fit`` by ``TorchAdapter`` (the caller's state is restored); the flow's sampling from a generator and
``numpy.random.default_rng(train.seed)``; GRC from its fixed seed 42 (official); the query's cells
from ``query.seed``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.adapters.kit.counterfactual_cells import cells_anndata, starting_rows
from bench.adapters.kit.param_groups import ParamGroups
from bench.adapters.kit.params import Params, param
from bench.adapters.kit.torch_adapter import TorchAdapter
from bench.adapters.kit.validation import validation_targets
from bench.adapters.scbig.ceiling import ceiling
from bench.adapters.scbig.clustering import ClusteringParams, cluster_genes
from bench.adapters.scbig.encoder import EncoderParams
from bench.adapters.scbig.flow import ConditionalFlow, ConditionalFlowParams
from bench.adapters.scbig.latent import LatentSpace
from bench.adapters.scbig.pretrain import PretrainParams, fit_latent, pca_latent
from bench.adapters.scbig.priors import ConditionFeatures, PriorParams, embeddings, pathways, relation_graph
from bench.adapters.scbig.training import (
    FlowData,
    FlowParams,
    Structure,
    StructureParams,
    cell_groups,
    predict_cells,
    train_flow,
    validation_groups,
)
from bench.core.api import OFFLINE_PRIORS, Prediction, PredictQuery, TrainData
from bench.core.conditions import perturbed_genes
from bench.core.errors import BenchWarning, ModelError

CEILING_PCS = 50


@dataclass(frozen=True)
class RunParams(Params):
    """``max_cells`` control cells per query; ``threads`` torch threads (0 = unchanged)."""

    max_cells: int = param(500, "[1, inf)")
    threads: int = param(0, "[0, inf)")


class ScBIGParams(ParamGroups):
    """The card's parameters, flat (the ``paper`` preset holds the official values), one group per
    component, described there. With ``official_priors`` and a prior the run uses without its official
    file, building them warns, once, when a run starts (``bench run`` builds every card first)."""

    clustering: ClusteringParams
    encoder: EncoderParams
    pretraining: PretrainParams
    network: ConditionalFlowParams
    training: FlowParams
    structure: StructureParams
    priors: PriorParams
    run: RunParams

    def __init__(self, **values):
        super().__init__(**values)
        missing = self.offline_priors()
        if self.priors.official_priors and missing:
            warnings.warn(f"scBIG runs offline substitutes for its {', '.join(missing)}: their official files are not "
                          "given (gene_embeddings, string_info, string_links, esm_features, pathways_gmt; "
                          "docs/scbig.md)", BenchWarning, stacklevel=2)

    def offline_priors(self) -> list[str]:
        """The priors this configuration uses whose official file is not given, so that it runs their
        substitutes (``priors.py``): gene embeddings (for GRC or the GCAE), the relation graph (GRC), the
        condition features, the pathways (a pathway weight above 0)."""
        sources = self.priors
        uses = {
            "gene embeddings": (self.clustering.clusters == "grc" or self.encoder.latent == "gcae",
                                sources.gene_embeddings),
            "relation graph": (self.clustering.clusters == "grc", sources.string_info and sources.string_links),
            "condition features": (True, sources.esm_features),
            "pathways": (self.structure.pathway_weight > 0, sources.pathways_gmt),
        }
        return [prior for prior, (used, given) in uses.items() if used and not given]


class ScBIGModel(TorchAdapter):
    """Parameters: ``ScBIGParams``."""

    Params = ScBIGParams

    def _fit(self, train: TrainData) -> None:
        params, cells = self.params, train.cells
        perturbed = sorted(perturbed_genes(train.conditions))
        if not perturbed:
            raise ModelError("scBIG needs perturbed training conditions; the training cells have none")
        groups, controls = cell_groups(cells)
        if not controls:
            raise ModelError("scBIG flows from control cells; the training cells have no controls")
        self.genes, self.device = train.genes, train.device
        if params.priors.official_priors:
            train.diagnostics[OFFLINE_PRIORS] = len(params.offline_priors())
        rng = train.rng()
        train.progress("gene priors")
        vectors = embeddings(train, params.priors, rng)
        self.labels = cluster_genes(params.clustering, vectors.clustering, lambda: relation_graph(train, params.priors),
                                    self.genes, train.progress)
        autoencoder = fit_latent(train, self.labels, vectors.positional, params.encoder, params.pretraining, rng)
        self.latent = LatentSpace(autoencoder, self.device)
        pca = LatentSpace(pca_latent(cells.X, CEILING_PCS, rng, self.device), self.device)
        train.diagnostics.update(ceiling({"latent": self.latent, f"pca{CEILING_PCS}": pca}, cells, train.val))
        data = FlowData(self.latent.encode(cells.X), cells.X, groups, controls)
        train.progress("condition features")
        features = ConditionFeatures(train, perturbed, params.priors)
        self.flow = ConditionalFlow(features, sorted(controls), data.z.shape[1], **params.network.sizes())
        self.flow = self.flow.to(self.device)
        sets = pathways(train, params.priors) if params.structure.pathway_weight else []
        structure = Structure.of(self.labels, sets, params.structure, self.device)
        validation = validation_groups(validation_targets(train), data, params.training.eval_cells, rng)
        alignment = train_flow(self.flow, self.latent, data, structure, validation, params.training, rng,
                               train.report, self.device, train.progress)
        train.diagnostics["structure_steps_skipped"] = alignment.skipped

    def _predict(self, query: PredictQuery) -> Prediction:
        rows = starting_rows(query, self.genes, self.params.run.max_cells)
        z0 = self.latent.encode(query.control.X[rows])
        cells = []
        for i, condition in enumerate(query.conditions):
            query.progress("solving the flow", i, len(query.conditions))
            cells.append(predict_cells(self.flow, self.latent, z0, condition, query.cell_type,
                                       self.params.training.rtol, self.params.training.atol).cpu().numpy())
        cells = np.stack(cells)
        return Prediction(means=pd.DataFrame(cells.mean(axis=1), index=query.conditions, columns=self.genes),
                          cells=cells_anndata(cells, query, self.genes))
