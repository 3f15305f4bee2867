"""The scBIG adapter (Ruan et al., ICML 2026, arXiv 2602.04901), behind the ``scbig`` card and its
ablations ``scbig_pca_latent``, ``scbig_random_clusters`` and ``scbig_no_structure_loss``.

``fit``: (1) Gene-Relation Clustering of the panel's genes (``clusters = "grc"``, or ``"random"``);
(2) the latent: the Gene-Cluster-Aware Encoder pre-trained as an autoencoder (``latent = "gcae"``), or
PCA (``"pca"``); (3) conditional flow matching in the standardised latent from training controls to
every training condition, with the structure-aware losses. ``predict``: encode up to ``max_cells`` of
the query's control cells, solve the ODE under each queried condition, decode; the decoded cells and
their mean are returned. Unseen genes are predicted from their prior features (``priors``).

Determinism: weights and dropout draw from torch's global generator, seeded with ``train.seed`` inside
``torch.random.fork_rng`` (the caller's state is restored); sampling from
``numpy.random.default_rng(train.seed)``; the query's cells from ``query.seed``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.adapters.counterfactual_cells import cells_anndata, starting_rows
from bench.adapters.scbig import clustering, priors
from bench.adapters.scbig.encoder import GeneClusterAwareEncoder, PCALatent, gene_moments
from bench.adapters.scbig.flow import ConditionalFlow
from bench.adapters.scbig.latent import LatentSpace
from bench.adapters.scbig.pretrain import PretrainSettings, pretrain
from bench.adapters.scbig.structure import membership
from bench.adapters.scbig.training import (FlowData, FlowSettings, Group, Structure, Validation, predict_cells,
                                           train_flow)
from bench.adapters.torch_runtime import seeded_torch, torch_threads
from bench.api import PredictQuery, Prediction, TrainData
from bench.conditions import CONTROL, perturbed_genes
from bench.data.pseudobulk import group_means
from bench.errors import ModelError

CLUSTERS = ("grc", "random")
LATENTS = ("gcae", "pca")


class ScBIGModel:
    """Parameters (card ``scbig``): clustering ``clusters``, at most ``n_clusters`` of at least
    ``min_cluster_size`` genes; latent ``latent``, ``latent_dim``, GCAE ``width``, ``n_blocks``,
    ``n_modules``, ``heads``, ``mlp_dim``, ``ae_dropout``; pre-training ``ae_epochs``, ``ae_batch_size``,
    ``ae_learning_rate``, ``ae_patience``; flow ``flow_steps`` optimiser steps of ``accumulation``
    micro-batches of ``batch_size`` cells, Adam ``learning_rate``, ``grad_clip``, path ``noise``,
    ``velocity_width`` x ``velocity_layers`` with ``dropout``, ``condition_width``, ``ode_steps``, ``eval_every``,
    ``patience`` (evaluations; 0 = none); structure losses ``correlation_weight``, ``pathway_weight``,
    every ``structure_every`` steps on ``structure_cells`` cells with ``structure_ode_steps``, at most
    ``max_pathways``; ``n_components`` of data-derived gene features; ``max_cells`` per query; official
    resources ``gene_embeddings``, ``string_info``, ``string_links``, ``string_min_score``,
    ``esm_features``, ``pathways_gmt`` ("" = offline substitute), the GMT's pathways of ``gmt_min_genes``
    to ``gmt_max_genes`` genes, at most ``gmt_max_pathways`` (0 = no bound; see ``priors``);
    ``mixed_precision`` (bfloat16 on CUDA); ``threads`` (torch threads, 0 = unchanged)."""

    def __init__(self, clusters: str = "grc", n_clusters: int = 32, min_cluster_size: int = 8, latent: str = "gcae",
                 latent_dim: int = 50, width: int = 256, n_blocks: int = 3, n_modules: int = 8, heads: int = 8,
                 mlp_dim: int = 512, ae_dropout: float = 0.0, dropout: float = 0.1, ae_epochs: int = 100,
                 ae_batch_size: int = 256, ae_learning_rate: float = 1e-4, ae_patience: int = 10,
                 flow_steps: int = 5000, batch_size: int = 256, accumulation: int = 1, learning_rate: float = 5e-5, grad_clip: float = 1.0,
                 noise: float = 0.5, velocity_width: int = 1024, velocity_layers: int = 2, condition_width: int = 256,
                 ode_steps: int = 20, eval_every: int = 500, patience: int = 0, correlation_weight: float = 0.1,
                 pathway_weight: float = 0.1, structure_every: int = 10, structure_cells: int = 128,
                 structure_ode_steps: int = 5, max_pathways: int = 64, n_components: int = 10, max_cells: int = 256,
                 gene_embeddings: str = "", string_info: str = "", string_links: str = "",
                 string_min_score: int = 700, esm_features: str = "", pathways_gmt: str = "",
                 gmt_min_genes: int = 1, gmt_max_genes: int = 0, gmt_max_pathways: int = 0,
                 mixed_precision: bool = True, threads: int = 0):
        if clusters not in CLUSTERS or latent not in LATENTS:
            raise ValueError(f"clusters must be one of {CLUSTERS}, latent one of {LATENTS}")
        sizes = (n_clusters, min_cluster_size, latent_dim, width, n_blocks, n_modules, heads, mlp_dim, ae_batch_size,
                 ae_patience, batch_size, accumulation, velocity_width, condition_width, ode_steps, eval_every,
                 structure_every, structure_cells, structure_ode_steps, n_components, max_cells, gmt_min_genes)
        bounds = (gmt_max_genes, gmt_max_pathways)
        if min(sizes) < 1 or min(ae_epochs, flow_steps, velocity_layers, patience, max_pathways, *bounds, threads) < 0:
            raise ValueError("sizes, counts and intervals must be >= 1; epochs, steps, layers, patience, "
                             "GMT bounds, threads >= 0")
        if width % heads:
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
        if not (0 <= dropout < 1 and 0 <= ae_dropout < 1) or min(ae_learning_rate, learning_rate, grad_clip) <= 0:
            raise ValueError("dropout and ae_dropout must be in [0, 1); learning rates and grad_clip > 0")
        if min(noise, correlation_weight, pathway_weight) < 0:
            raise ValueError("noise and the structure-loss weights must be >= 0")
        self.clusters, self.latent_kind = clusters, latent
        self.k_max, self.min_cluster_size, self.latent_dim = n_clusters, min_cluster_size, latent_dim
        self.gcae = dict(width=width, n_blocks=n_blocks, n_modules=n_modules, heads=heads, mlp=mlp_dim,
                         dropout=ae_dropout)
        self.pretrain_settings = PretrainSettings(ae_epochs, ae_batch_size, ae_learning_rate, ae_patience)
        self.flow_sizes = dict(width=condition_width, hidden=velocity_width, layers=velocity_layers, dropout=dropout)
        self.flow_settings = FlowSettings(flow_steps, batch_size, accumulation, learning_rate, grad_clip, noise,
                                          ode_steps, eval_every, patience, correlation_weight, pathway_weight,
                                          structure_every, structure_cells, structure_ode_steps, mixed_precision)
        self.max_pathways, self.n_components = max_pathways, n_components
        self.max_cells, self.threads = max_cells, threads
        self.sources = priors.Sources(gene_embeddings, string_info, string_links, string_min_score, esm_features,
                                      pathways_gmt, gmt_min_genes, gmt_max_genes, gmt_max_pathways)

    def fit(self, train: TrainData) -> None:
        with torch_threads(self.threads):
            self._fit(train)

    def _fit(self, train: TrainData) -> None:
        cells = train.cells
        perturbed = sorted(perturbed_genes(train.conditions))
        if not perturbed:
            raise ModelError("scBIG needs perturbed training conditions; the training cells have none")
        condition = cells.obs["condition"].astype(str).to_numpy()
        cell_type = cells.obs["cell_type"].astype(str).to_numpy()
        controls = {t: np.flatnonzero((condition == CONTROL) & (cell_type == t)) for t in np.unique(cell_type)}
        controls = {t: rows for t, rows in controls.items() if len(rows)}
        if not controls:
            raise ModelError("scBIG flows from control cells; the training cells have no controls")
        self.genes, self.device = train.genes, train.device
        rng = train.rng()
        with seeded_torch(train.seed, self.device):
            self.labels, embeddings = self._cluster(train, rng)
            self.latent = LatentSpace(self._autoencoder(train, embeddings, rng), cells.X, self.device)
            features = priors.ConditionFeatures(train, perturbed, self.n_components, self.sources)
            cell_types = sorted(controls)
            latent_dim = self.latent.mean.shape[0]
            self.flow = ConditionalFlow(features, cell_types, latent_dim, **self.flow_sizes).to(self.device)
            groups = [Group(t, c, np.flatnonzero((condition == c) & (cell_type == t)))
                      for t in cell_types for c in sorted(set(condition[cell_type == t]) - {CONTROL})]
            data = FlowData(self.latent.encode(cells.X), cells.X, groups, controls)
            structure = self._structure(train)
            train_flow(self.flow, self.latent, data, structure, self._validation(train, data, rng),
                       self.flow_settings, rng, train.report, self.device)

    def _cluster(self, train: TrainData, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        embeddings = priors.gene_embeddings(train, self.sources, rng)
        k = clustering.n_clusters(len(self.genes), self.k_max, self.min_cluster_size)
        if self.clusters == "random":
            return clustering.random_clusters(len(self.genes), k, train.seed), embeddings
        neighbours = clustering.adjacency(priors.relation_graph(train, self.sources), self.genes)
        return clustering.gene_relation_clusters(embeddings, neighbours, k, train.seed), embeddings

    def _autoencoder(self, train: TrainData, embeddings: np.ndarray, rng: np.random.Generator):
        x = train.cells.X
        if self.latent_kind == "pca":
            rows = np.sort(rng.choice(x.shape[0], size=min(x.shape[0], priors.MAX_CELLS), replace=False))
            sample = x[rows].toarray() if sp.issparse(x) else np.asarray(x[rows])
            return PCALatent(sample.astype(np.float64), self.latent_dim).to(self.device)
        k = int(self.labels.max()) + 1
        cluster_embeddings = np.stack([embeddings[self.labels == c].mean(axis=0) for c in range(k)])
        net = GeneClusterAwareEncoder(self.labels, cluster_embeddings, *gene_moments(x), self.latent_dim, **self.gcae)
        net = net.to(self.device)
        val = train.val.X if train.val.n_obs else None
        pretrain(net, x, val, self.pretrain_settings, rng, self.device)
        return net

    def _structure(self, train: TrainData) -> Structure:
        k = int(self.labels.max()) + 1
        clusters = membership([np.flatnonzero(self.labels == c) for c in range(k)], len(self.genes), self.device)
        sets = priors.pathways(train, self.sources, self.max_pathways) if self.flow_settings.pathway_weight else []
        return Structure(clusters, membership(sets, len(self.genes), self.device) if sets else None)

    def _validation(self, train: TrainData, data: FlowData, rng: np.random.Generator) -> Validation | None:
        val = train.val[train.val.obs["condition"].astype(str) != CONTROL]
        groups = []
        for cell_type in sorted(set(val.obs["cell_type"].astype(str)) & set(data.controls)):
            subset = val[val.obs["cell_type"].astype(str) == cell_type]
            labels, means = group_means(subset.X, subset.obs["condition"].astype(str))
            pool = data.controls[cell_type]
            rows = np.sort(rng.choice(pool, size=min(self.max_cells, len(pool)), replace=False))
            observed = self.latent.mean.new_tensor(np.asarray(means, dtype=np.float32))
            groups.append((cell_type, list(labels), observed, data.z[rows]))
        return Validation(groups) if groups else None

    def predict(self, query: PredictQuery) -> Prediction:
        with torch_threads(self.threads):
            return self._predict(query)

    def _predict(self, query: PredictQuery) -> Prediction:
        rows = starting_rows(query, self.genes, self.max_cells)
        z0 = self.latent.encode(query.control.X[rows])
        steps = self.flow_settings.ode_steps
        cells = np.stack([predict_cells(self.flow, self.latent, z0, c, query.cell_type, steps).cpu().numpy()
                          for c in query.conditions])
        return Prediction(means=pd.DataFrame(cells.mean(axis=1), index=query.conditions, columns=self.genes),
                          cells=cells_anndata(cells, query, self.genes))
