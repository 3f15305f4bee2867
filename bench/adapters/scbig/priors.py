"""The prior knowledge scBIG is built on: the official resources when the card names their files (read by
``kit.gene_resources``; ``docs/scbig.md`` cites the release), else offline substitutes:

- gene embeddings (clustering, positional codes): GeneCompass ``gene_embeddings``; offline: PCA loadings;
- relation graph: STRING ``string_info`` and ``string_links`` (``string_min_score``); offline: the GO graph;
- perturbed-gene features: ESM2 ``esm_features`` alone; offline: GO embedding, pseudobulk PCA loadings;
- pathways: a GMT ``pathways_gmt`` (``gmt_*`` bounds, 0 = none); offline: the largest GO gene sets.

GeneCompass is read two ways, as the release does: for clustering by symbol, then Ensembl id, then raw
key, each gene not found filled with ``default_rng(42).normal(0, 0.1, dim)`` in panel order
(``scbig/clustering/grc.py:54-77``); for the positional code by symbol only, zeros elsewhere
(``scbig/models/_gcae_impl.py:1312-1345``). Offline, both are the data-derived embeddings: genes
standardised over at most ``pretrain.PCA_CELLS`` training cells (drawn with the caller's ``rng``),
embedded by their loadings on the top principal axes (scaled by the singular values), rows L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from bench.adapters.kit import gene_resources
from bench.adapters.kit.gene_features import GeneFeatures
from bench.adapters.kit.params import Params, param
from bench.adapters.scbig.clustering import SEED as GRC_SEED
from bench.adapters.scbig.pretrain import PCA_CELLS
from bench.core import linalg
from bench.core.api import TrainData

EMBEDDING_DIM = 64


@dataclass(frozen=True)
class PriorParams(Params):
    """The offline substitutes' sizes; the official resources' paths ("" = the substitute) and filters;
    ``official_priors``: the configuration is the official one (the ``paper`` preset), so a substitute it runs
    is warned about and recorded (``ScBIGParams.offline_priors``)."""

    official_priors: bool = param(False)
    max_pathways: int = param(64, "[0, inf)")
    n_components: int = param(10, "[1, inf)")
    gene_embeddings: str = param("")
    string_info: str = param("")
    string_links: str = param("")
    string_min_score: int = param(700)
    esm_features: str = param("")
    pathways_gmt: str = param("")
    gmt_min_genes: int = param(1, "[1, inf)")
    gmt_max_genes: int = param(0, "[0, inf)")
    gmt_max_pathways: int = param(0, "[0, inf)")


class GeneVectors(NamedTuple):
    """A gene-embedding file's vectors of a panel for each use (zero rows for genes not found), found masks."""

    clustering: np.ndarray
    clustering_found: np.ndarray
    positional: np.ndarray
    positional_found: np.ndarray


def read_gene_vectors(path: str, genes: list[str]) -> GeneVectors:
    file = gene_resources.read_gene_embeddings(path)
    return GeneVectors(*file.lookup(genes), *file.lookup(genes, symbols_only=True))


def data_gene_embeddings(train: TrainData, rng: np.random.Generator, dim: int = EMBEDDING_DIM) -> np.ndarray:
    cells = train.cells
    x = cells.X[linalg.sample_rows(cells.n_obs, rng, PCA_CELLS)]
    x = x.toarray() if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    _, values, axes = linalg.principal_axes(x, dim, scale=True)
    return (axes.T * values).astype(np.float32)


@dataclass
class GeneEmbeddings:
    """Per-gene vectors, panel order: ``clustering`` (GRC's input) and ``positional`` (the encoder's
    positional code). Offline both are the same data-derived matrix."""

    clustering: np.ndarray
    positional: np.ndarray


def embeddings(train: TrainData, params: PriorParams, rng: np.random.Generator) -> GeneEmbeddings:
    """The gene embeddings of ``train.genes`` (see the module docstring); ``rng`` is used offline only."""
    if not params.gene_embeddings:
        data = normalize(data_gene_embeddings(train, rng)).astype(np.float32)
        return GeneEmbeddings(data, data.copy())
    vectors = read_gene_vectors(params.gene_embeddings, train.genes)
    clustering = vectors.clustering.copy()
    fill = np.random.default_rng(GRC_SEED)
    for row in np.flatnonzero(~vectors.clustering_found):
        clustering[row] = fill.normal(0.0, 0.1, size=clustering.shape[1]).astype(np.float32)
    return GeneEmbeddings(clustering, vectors.positional)


def relation_graph(train: TrainData, params: PriorParams) -> pd.DataFrame:
    return gene_resources.gene_graph(train, params.string_info, params.string_links, params.string_min_score)


def pathways(train: TrainData, params: PriorParams) -> list[np.ndarray]:
    """Gene-index arrays of the GMT file's pathways, else of the ``max_pathways`` largest GO gene sets."""
    return gene_resources.gene_sets(train, params.pathways_gmt, params.gmt_min_genes,
                                    params.gmt_max_genes or None, params.gmt_max_pathways or None,
                                    params.max_pathways)


class ConditionFeatures:
    """Fixed feature vectors of perturbed genes, the condition encoder's slots.

    Official (``esm_features``): the gene's ESM2 vector alone, zeros for a gene without one (the slot is
    then masked, as for ``ctrl``; ``train_norman_additive.py`` builds them so). Offline: ``[GO embedding,
    data PCA loadings, flags of which exist]``, zeros for a gene with neither.
    """

    def __init__(self, train: TrainData, perturbed: list[str], params: PriorParams):
        self.esm_path = params.esm_features
        if self.esm_path:
            self.dim = gene_resources.read_esm_features(self.esm_path, perturbed)[0].shape[1]
        else:
            self.genes = GeneFeatures.fit(train, perturbed, params.n_components)
            self.dim = self.genes.go_dim + self.genes.data_dim + 2

    def lookup(self, genes: list[str]) -> np.ndarray:
        if self.esm_path:
            return gene_resources.read_esm_features(self.esm_path, genes)[0]
        go, data = self.genes.lookup(genes)
        flags = np.stack([np.abs(go).sum(axis=1) > 0, np.abs(data).sum(axis=1) > 0], axis=1)
        return np.hstack([go, data, flags.astype(np.float32)]).astype(np.float32)
