"""The scBIG adapter (Ruan et al., ICML 2026, arXiv 2602.04901), behind the ``scbig`` card and its
ablations ``scbig_pca_latent``, ``scbig_random_clusters`` and ``scbig_no_structure_loss``; the
component-by-component correspondence with the official release is ``docs/scbig.md``.

``fit``: (1) Gene-Relation Clustering of the panel's genes (``clusters = "grc"``, or ``"random"``);
(2) the latent: the Gene-Cluster-Aware Encoder pre-trained as an autoencoder on the cluster-sorted
genes (``latent = "gcae"``), or PCA (``"pca"``); the latent ceiling of the validation conditions is
recorded (``ceiling``); (3) CellFlow's conditional flow matching in the raw latent from training
controls to every training condition, with the structure-aware alignment steps (``training``).
``predict``: encode up to ``max_cells`` of the query's control cells, solve the ODE under each queried
condition, decode; the decoded cells and their mean are returned. Unseen genes are predicted from
their prior features (``priors``).

Determinism: weights and dropout draw from torch's global generator, seeded with ``train.seed`` inside
``torch.random.fork_rng`` (the caller's state is restored); the flow's sampling from a generator and
``numpy.random.default_rng(train.seed)``; GRC from its fixed seed 42 (official); the query's cells
from ``query.seed``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.adapters.kit.counterfactual_cells import cells_anndata, starting_rows
from bench.adapters.scbig import clustering, priors
from bench.adapters.scbig.ceiling import ceiling
from bench.adapters.scbig.encoder import GeneClusterAwareEncoder, PCALatent
from bench.adapters.scbig.flow import ConditionalFlow
from bench.adapters.scbig.latent import LatentSpace
from bench.adapters.scbig.pretrain import PretrainSettings, encoder_validation_rows, pretrain
from bench.adapters.scbig.structure import membership
from bench.adapters.scbig.training import (
    FlowData,
    FlowSettings,
    Group,
    Structure,
    StructureSettings,
    ValidationGroup,
    predict_cells,
    train_flow,
)
from bench.adapters.kit.torch_runtime import dense_rows, seeded_torch, torch_threads
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import CONTROL, perturbed_genes
from bench.core.errors import ModelError
from bench.core.pseudobulk import group_means

CLUSTERS = ("grc", "random")
LATENTS = ("gcae", "pca")
CEILING_PCS = 50


class ScBIGModel:
    """Parameters (card ``scbig``; the ``paper`` preset holds the official values):

    - clustering: ``clusters``, ``n_clusters``;
    - latent: ``latent``, ``latent_dim``; GCAE ``chunk_size``, ``width``, ``n_blocks``, ``n_modules``,
      ``heads``, ``mlp_dim``, ``ae_dropout``; its training ``ae_epochs``, ``ae_batch_size``,
      ``ae_learning_rate``, validated every ``ae_eval_every`` epochs on ``ae_eval_cells`` cells with
      ``ae_patience`` evaluations;
    - velocity field: ``time_width`` (the time code), ``flow_width`` x ``flow_layers`` for each of its
      time, latent and decoder MLPs, ``flow_dropout``; condition encoder ``condition_dim``, ``seed_dim``,
      ``seed_heads``, ``condition_dropout``;
    - flow matching: ``calls`` of ``batch_size`` cells, ``accumulation`` calls per Adam update at
      ``learning_rate``, ``grad_clip``, path ``noise``, coupling ``ot_epsilon``, ``ot_threshold``,
      ``ot_iterations``; validation every ``eval_every`` calls on ``eval_cells`` cells (``patience``
      evaluations, 0 = never stop early); ODE tolerances ``rtol``, ``atol``;
    - structure alignment every ``structure_every`` calls on ``structure_conditions`` conditions of
      ``structure_cells`` cells, Adam ``structure_learning_rate``, element-wise clip ``structure_clip``,
      ``correlation_weight``, ``pathway_weight``; at most ``max_pathways`` offline (GO) gene sets;
    - ``n_components`` of data-derived gene features (offline condition features); ``max_cells`` per query;
    - official resources ``gene_embeddings``, ``string_info``, ``string_links``, ``string_min_score``,
      ``esm_features``, ``pathways_gmt`` ("" = offline substitute) and the GMT's pathways of
      ``gmt_min_genes`` to ``gmt_max_genes`` genes, at most ``gmt_max_pathways`` (0 = no bound);
    - ``threads`` (torch threads, 0 = unchanged).
    """

    def __init__(self, clusters: str = "grc", n_clusters: int = 32, latent: str = "gcae", latent_dim: int = 50,
                 chunk_size: int = 64, width: int = 256, n_blocks: int = 3, n_modules: int = 8, heads: int = 8,
                 mlp_dim: int = 512, ae_dropout: float = 0.1, ae_epochs: int = 100, ae_batch_size: int = 256,
                 ae_learning_rate: float = 1e-4, ae_eval_every: int = 5, ae_patience: int = 4,
                 ae_eval_cells: int = 300, time_width: int = 1024, flow_width: int = 1024, flow_layers: int = 2,
                 flow_dropout: float = 0.1, condition_dim: int = 256, seed_dim: int = 64, seed_heads: int = 8,
                 condition_dropout: float = 0.9, calls: int = 500_000, accumulation: int = 20,
                 batch_size: int = 1024, learning_rate: float = 5e-5, grad_clip: float = 1.0, noise: float = 0.5,
                 ot_epsilon: float = 1.0, ot_threshold: float = 1e-3, ot_iterations: int = 2000,
                 eval_every: int = 100_000, eval_cells: int = 500, patience: int = 0, rtol: float = 1e-5,
                 atol: float = 1e-5, structure_every: int = 1000, structure_conditions: int = 3,
                 structure_cells: int = 64, structure_learning_rate: float = 5e-5, structure_clip: float = 1.0,
                 correlation_weight: float = 0.1, pathway_weight: float = 0.1, max_pathways: int = 64,
                 n_components: int = 10, max_cells: int = 500, gene_embeddings: str = "", string_info: str = "",
                 string_links: str = "", string_min_score: int = 700, esm_features: str = "",
                 pathways_gmt: str = "", gmt_min_genes: int = 1, gmt_max_genes: int = 0, gmt_max_pathways: int = 0,
                 threads: int = 0):
        if clusters not in CLUSTERS or latent not in LATENTS:
            raise ValueError(f"clusters must be one of {CLUSTERS}, latent one of {LATENTS}")
        positive = (n_clusters, latent_dim, chunk_size, width, n_blocks, n_modules, heads, mlp_dim, ae_batch_size,
                    ae_eval_cells, time_width, flow_width, flow_layers, condition_dim, seed_dim, seed_heads, calls,
                    accumulation, batch_size, ot_iterations, eval_every, eval_cells, structure_every,
                    structure_conditions, structure_cells, n_components, max_cells, gmt_min_genes)
        counts = (ae_epochs, ae_eval_every, ae_patience, patience, max_pathways, gmt_max_genes, gmt_max_pathways,
                  threads)
        if min(positive) < 1 or min(counts) < 0:
            raise ValueError("sizes, counts and intervals must be >= 1; epochs, patience, bounds and threads >= 0")
        if width % heads or seed_dim % seed_heads or time_width % 2:
            raise ValueError("width must be a multiple of heads, seed_dim of seed_heads, and time_width even")
        rates = (ae_dropout, flow_dropout, condition_dropout)
        if not all(0 <= rate < 1 for rate in rates) or min(ae_learning_rate, learning_rate, structure_learning_rate,
                                                           grad_clip, structure_clip, ot_epsilon, ot_threshold,
                                                           rtol, atol) <= 0:
            raise ValueError("dropout rates must be in [0, 1); learning rates, clips, OT and ODE settings > 0")
        if min(noise, correlation_weight, pathway_weight) < 0:
            raise ValueError("noise and the structure-loss weights must be >= 0")
        self.clusters, self.k, self.latent_kind, self.latent_dim = clusters, n_clusters, latent, latent_dim
        self.gcae = dict(latent_dim=latent_dim, width=width, n_blocks=n_blocks, n_modules=n_modules, heads=heads,
                         mlp_dim=mlp_dim, dropout=ae_dropout, chunk_size=chunk_size)
        self.pretrain_settings = PretrainSettings(ae_epochs, ae_batch_size, ae_learning_rate, ae_eval_every,
                                                  ae_patience, ae_eval_cells)
        dims = (flow_width,) * flow_layers
        self.flow_sizes = dict(condition_dim=condition_dim, seed_dim=seed_dim, heads=seed_heads,
                               time_width=time_width, time_dims=dims, x_dims=dims, decoder_dims=dims,
                               x_dropout=flow_dropout, decoder_dropout=flow_dropout,
                               condition_dropout=condition_dropout)
        structure = StructureSettings(structure_every, structure_conditions, structure_cells,
                                      structure_learning_rate, structure_clip, correlation_weight, pathway_weight)
        self.flow_settings = FlowSettings(calls, accumulation, batch_size, learning_rate, grad_clip, noise, ot_epsilon,
                                          ot_threshold, ot_iterations, eval_every, eval_cells, patience, rtol, atol,
                                          structure)
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
            train.progress("gene priors")
            vectors = priors.embeddings(train, self.sources, rng)
            self.labels = self._cluster(train, vectors.clustering)
            self.latent = LatentSpace(self._autoencoder(train, vectors.positional, rng), self.device)
            pca = LatentSpace(self._pca(cells.X, CEILING_PCS, rng), self.device)
            train.diagnostics.update(ceiling({"latent": self.latent, f"pca{CEILING_PCS}": pca}, cells, train.val))
            cell_types = sorted(controls)
            groups = [Group(t, c, np.flatnonzero((condition == c) & (cell_type == t)))
                      for t in cell_types for c in sorted(set(condition[cell_type == t]) - {CONTROL})]
            data = FlowData(self.latent.encode(cells.X), cells.X, groups, controls)
            train.progress("condition features")
            features = priors.ConditionFeatures(train, perturbed, self.n_components, self.sources)
            self.flow = ConditionalFlow(features, cell_types, data.z.shape[1], **self.flow_sizes).to(self.device)
            alignment = train_flow(self.flow, self.latent, data, self._structure(train),
                                   self._validation(train, data, rng), self.flow_settings, rng, train.report,
                                   self.device, train.progress)
            train.diagnostics["structure_steps_skipped"] = alignment.skipped

    def _cluster(self, train: TrainData, embeddings: np.ndarray) -> np.ndarray:
        k = clustering.n_clusters(len(self.genes), self.k)
        if self.clusters == "random":
            return clustering.random_clusters(len(self.genes), k, clustering.SEED)
        train.progress("gene-relation clustering")
        neighbours = clustering.adjacency(priors.relation_graph(train, self.sources), self.genes)
        return clustering.gene_relation_clusters(embeddings, neighbours, k, progress=train.progress)

    def _pca(self, x, components: int, rng: np.random.Generator) -> PCALatent:
        rows = np.sort(rng.choice(x.shape[0], size=min(x.shape[0], priors.MAX_CELLS), replace=False))
        sample = x[rows].toarray() if sp.issparse(x) else np.asarray(x[rows])
        return PCALatent(sample.astype(np.float64), components).to(self.device)

    def _autoencoder(self, train: TrainData, positional: np.ndarray, rng: np.random.Generator):
        x = train.cells.X
        if self.latent_kind == "pca":
            return self._pca(x, self.latent_dim, rng)
        controls = train.cells.obs["condition"].astype(str).to_numpy() == CONTROL
        val_controls = train.val.obs["condition"].astype(str).to_numpy() == CONTROL
        rows, val_x = encoder_validation_rows(x, controls, train.val.X, val_controls,
                                              self.pretrain_settings.eval_cells, train.seed)
        gene_mean = dense_rows(x, rows, "cpu").double().mean(dim=0).numpy()
        net = GeneClusterAwareEncoder(clustering.gene_order(self.labels), gene_mean, positional, **self.gcae)
        net = net.to(self.device)
        pretrain(net, x[rows], val_x, self.pretrain_settings, rng, self.device, train.progress)
        return net

    def _structure(self, train: TrainData) -> Structure:
        k = int(self.labels.max()) + 1
        clusters = membership([np.flatnonzero(self.labels == c) for c in range(k)], len(self.genes), self.device)
        weights = self.flow_settings.structure
        sets = priors.pathways(train, self.sources, self.max_pathways) if weights.pathway_weight else []
        return Structure(clusters, membership(sets, len(self.genes), self.device) if sets else None)

    def _validation(self, train: TrainData, data: FlowData, rng: np.random.Generator) -> list[ValidationGroup]:
        """Per cell type: its validation conditions' observed means, the mean of all its training controls
        and the latents of ``eval_cells`` of them (the same cells at every validation)."""
        val = train.val[train.val.obs["condition"].astype(str) != CONTROL]
        groups = []
        for cell_type in sorted(set(val.obs["cell_type"].astype(str)) & set(data.controls)):
            subset = val[val.obs["cell_type"].astype(str) == cell_type]
            labels, means = group_means(subset.X, subset.obs["condition"].astype(str))
            pool = data.controls[cell_type]
            control_mean = dense_rows(data.x, pool, "cpu").double().mean(dim=0).numpy()
            rows = np.sort(rng.choice(pool, size=min(self.flow_settings.eval_cells, len(pool)), replace=False))
            groups.append(ValidationGroup(cell_type, list(labels), np.asarray(means, dtype=np.float64), control_mean,
                                          data.z[rows]))
        return groups

    def predict(self, query: PredictQuery) -> Prediction:
        with torch_threads(self.threads):
            return self._predict(query)

    def _predict(self, query: PredictQuery) -> Prediction:
        rows = starting_rows(query, self.genes, self.max_cells)
        z0 = self.latent.encode(query.control.X[rows])
        settings = self.flow_settings
        cells = []
        for i, condition in enumerate(query.conditions):
            query.progress("solving the flow", i, len(query.conditions))
            cells.append(predict_cells(self.flow, self.latent, z0, condition, query.cell_type, settings.rtol,
                                       settings.atol).cpu().numpy())
        cells = np.stack(cells)
        return Prediction(means=pd.DataFrame(cells.mean(axis=1), index=query.conditions, columns=self.genes),
                          cells=cells_anndata(cells, query, self.genes))
