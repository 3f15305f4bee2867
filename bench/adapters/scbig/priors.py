"""The prior knowledge scBIG is built on, offline by default, the official resources when given.

- gene embeddings (clustering, positional codes): PCA loadings of the training cells; official:
  GeneCompass's pickle (or a flat ``{symbol: vector}`` one), parameter ``gene_embeddings``;
- relation graph: GEARS' Gene Ontology Jaccard graph; official: STRING ``string_info`` and
  ``string_links`` (combined score >= ``string_min_score``);
- perturbed-gene features (conditions): GO embedding and pseudobulk PCA loadings; official: ESM2
  ``esm_features`` alone, scBIG's single file or a directory of one tensor file per gene;
- pathways: GO biological-process gene sets of 5 to 200 genes, the ``max_pathways`` largest; official:
  Reactome (or any) ``pathways_gmt``, the pathways of ``gmt_min_genes`` to ``gmt_max_genes`` panel genes
  (0: no bound), at most ``gmt_max_pathways`` (0: all) of them, the largest.

Each official resource is a card parameter or a ``--param`` path; "" uses the offline substitute.

Gene embeddings (``embeddings``). With a GeneCompass file the two uses read it as the release does,
two different ways (``ttruan2426-dot/scBIG`` @ 5659ce9):

- clustering: the three-level lookup (symbol store, then the symbol's Ensembl id, then the name in the
  Ensembl store), each gene not found filled with ``default_rng(42).normal(0, 0.1, dim)``, drawn in
  panel order (``scbig/clustering/grc.py:54-77``, called at ``scbig/experiments/prepare_norman_grc.py:105-112``
  with ``--random_state 42`` of ``scripts/prepare_norman_grc.sh:29``);
- positional code: the symbol store only, zeros for genes not found
  (``scbig/models/_gcae_impl.py:1312-1345``).

Offline, both are the data-derived embeddings: genes are standardised over at most ``MAX_CELLS``
training cells (a subsample drawn with the caller's ``rng``) and embedded by their loadings on the top
principal axes (scaled by the singular values), rows L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from bench.adapters.gene_features import GeneFeatures
from bench.adapters.kit import gene_resources
from bench.adapters.scbig.clustering import SEED as GRC_SEED
from bench.core.api import TrainData

MAX_CELLS = 5000
EMBEDDING_DIM = 64


@dataclass
class Sources:
    """Paths of the official resources ("" = use the offline substitute)."""

    gene_embeddings: str = ""
    string_info: str = ""
    string_links: str = ""
    string_min_score: int = 700
    esm_features: str = ""
    pathways_gmt: str = ""
    gmt_min_genes: int = 1
    gmt_max_genes: int = 0
    gmt_max_pathways: int = 0


def data_gene_embeddings(train: TrainData, rng: np.random.Generator, dim: int = EMBEDDING_DIM) -> np.ndarray:
    cells = train.cells
    rows = np.sort(rng.choice(cells.n_obs, size=min(cells.n_obs, MAX_CELLS), replace=False))
    x = cells.X[rows]
    x = x.toarray() if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    scale = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    _, values, axes = np.linalg.svd(z, full_matrices=False)
    k = min(dim, len(values))
    return (axes[:k].T * values[:k]).astype(np.float32)


@dataclass(frozen=True)
class GeneVectors:
    """A gene-embedding file's vectors of a gene panel, zero rows for genes not found: ``clustering``
    looks a gene up in GeneCompass's symbol store, then under its Ensembl id, then under its own name in
    the Ensembl-id store (official ``scbig/clustering/grc.py``); ``positional`` in the symbol store only
    (official ``scbig/models/_gcae_impl.py``). A flat file has only the symbol store."""

    clustering: np.ndarray
    clustering_found: np.ndarray
    positional: np.ndarray
    positional_found: np.ndarray


def read_gene_vectors(path: str, genes: list[str]) -> GeneVectors:
    """The vectors of ``genes`` in a gene-embedding file (``gene_resources.read_gene_embeddings``)."""
    file = gene_resources.read_gene_embeddings(path)
    clustering = []
    for gene in genes:
        vector = file.symbols.get(gene)
        if vector is None and gene in file.symbol_to_ensembl:
            vector = file.ensembl.get(file.symbol_to_ensembl[gene])
        clustering.append(file.ensembl.get(gene) if vector is None else vector)
    positional = [file.symbols.get(g) for g in genes]
    return GeneVectors(*gene_resources.vector_rows(clustering, file.width),
                       *gene_resources.vector_rows(positional, file.width))


@dataclass
class GeneEmbeddings:
    """Per-gene vectors, panel order: ``clustering`` (GRC's input) and ``positional`` (the encoder's
    positional code). Offline both are the same data-derived matrix."""

    clustering: np.ndarray
    positional: np.ndarray


def embeddings(train: TrainData, sources: Sources, rng: np.random.Generator) -> GeneEmbeddings:
    """The gene embeddings of ``train.genes`` (see the module docstring); ``rng`` is used offline only."""
    if not sources.gene_embeddings:
        data = normalize(data_gene_embeddings(train, rng)).astype(np.float32)
        return GeneEmbeddings(data, data.copy())
    vectors = read_gene_vectors(sources.gene_embeddings, train.genes)
    clustering = vectors.clustering.copy()
    fill = np.random.default_rng(GRC_SEED)
    for row in np.flatnonzero(~vectors.clustering_found):
        clustering[row] = fill.normal(0.0, 0.1, size=clustering.shape[1]).astype(np.float32)
    return GeneEmbeddings(clustering, vectors.positional)


def relation_graph(train: TrainData, sources: Sources) -> pd.DataFrame:
    if sources.string_info or sources.string_links:
        return gene_resources.read_string_graph(sources.string_info, sources.string_links, train.genes,
                                           sources.string_min_score)
    if train.gene_knowledge is None:
        return pd.DataFrame(columns=["source", "target", "importance"])
    return train.gene_knowledge.graph(train.genes)


def pathways(train: TrainData, sources: Sources, max_pathways: int) -> list[np.ndarray]:
    """Gene-index arrays of the pathways, possibly none: those of the GMT file, in file order, or at
    most ``max_pathways`` GO gene sets, the largest first."""
    if sources.pathways_gmt:
        chosen = gene_resources.read_gmt(sources.pathways_gmt, train.genes, sources.gmt_min_genes,
                                    sources.gmt_max_genes or None, sources.gmt_max_pathways or None)
    elif train.gene_knowledge is not None:
        sets = train.gene_knowledge.gene_sets(train.genes)
        chosen = sorted(sets.items(), key=lambda item: (-len(item[1]), item[0]))[:max_pathways]
    else:
        chosen = []
    index = {g: i for i, g in enumerate(train.genes)}
    return [np.array([index[g] for g in members]) for _, members in chosen]


class ConditionFeatures:
    """Fixed feature vectors of perturbed genes, the condition encoder's slots.

    Official (``esm_features``): the gene's ESM2 vector alone, zeros for a gene without one (the slot is
    then masked, as for ``ctrl``; ``train_norman_additive.py`` builds them so). Offline: ``[GO embedding,
    data PCA loadings, flags of which exist]``, zeros for a gene with neither.
    """

    def __init__(self, train: TrainData, perturbed: list[str], n_components: int, sources: Sources):
        self.esm_path = sources.esm_features
        if self.esm_path:
            self.dim = gene_resources.read_esm_features(self.esm_path, perturbed)[0].shape[1]
        else:
            self.genes = GeneFeatures.fit(train, perturbed, n_components)
            self.dim = self.genes.go_dim + self.genes.data_dim + 2

    def lookup(self, genes: list[str]) -> np.ndarray:
        if self.esm_path:
            return gene_resources.read_esm_features(self.esm_path, genes)[0]
        go, data = self.genes.lookup(genes)
        flags = np.stack([np.abs(go).sum(axis=1) > 0, np.abs(data).sum(axis=1) > 0], axis=1)
        return np.hstack([go, data, flags.astype(np.float32)]).astype(np.float32)
