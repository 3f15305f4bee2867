"""The prior knowledge scBIG is built on, offline by default, the official resources when given.

- gene embeddings (clustering, positional codes): PCA loadings of the training cells; official:
  GeneCompass's pickle (or a flat ``{symbol: vector}`` one), parameter ``gene_embeddings``;
- relation graph: GEARS' Gene Ontology Jaccard graph; official: STRING ``string_info`` and
  ``string_links`` (combined score >= ``string_min_score``);
- perturbed-gene features (conditions): GO embedding and pseudobulk PCA loadings; official: ESM2
  ``esm_features``, scBIG's single file or a directory of one tensor file per gene;
- pathways: GO biological-process gene sets of 5 to 200 genes, the ``max_pathways`` largest; official:
  Reactome (or any) ``pathways_gmt``, the pathways of ``gmt_min_genes`` to ``gmt_max_genes`` panel genes
  (0: no bound), at most ``gmt_max_pathways`` (0: all) of them, the largest.

Each official resource is a card parameter or a ``--param`` path; "" uses the offline substitute.

Data-derived gene embeddings come from training cells only: genes are standardised over at most
``MAX_CELLS`` cells and embedded by their loadings on the top principal axes (scaled by the singular
values). With a GeneCompass file, a gene's vector is ``[file vector, data vector]`` (each part
L2-normalised; the file vector is GeneCompass's clustering lookup, zero when the file lacks the gene),
so genes outside the file still cluster by data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from bench.adapters.gene_features import GeneFeatures
from bench.adapters.scbig import resources
from bench.api import TrainData

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


def gene_embeddings(train: TrainData, sources: Sources, rng: np.random.Generator) -> np.ndarray:
    data = normalize(data_gene_embeddings(train, rng))
    if not sources.gene_embeddings:
        return data.astype(np.float32)
    official = resources.read_gene_vectors(sources.gene_embeddings, train.genes).clustering
    return normalize(np.hstack([normalize(official), data])).astype(np.float32)


def relation_graph(train: TrainData, sources: Sources) -> pd.DataFrame:
    if sources.string_info or sources.string_links:
        return resources.read_string_graph(sources.string_info, sources.string_links, train.genes,
                                           sources.string_min_score)
    if train.gene_knowledge is None:
        return pd.DataFrame(columns=["source", "target", "importance"])
    return train.gene_knowledge.graph(train.genes)


def pathways(train: TrainData, sources: Sources, max_pathways: int) -> list[np.ndarray]:
    """Gene-index arrays of the pathways, possibly none: those of the GMT file, in file order, or at
    most ``max_pathways`` GO gene sets, the largest first."""
    if sources.pathways_gmt:
        chosen = resources.read_gmt(sources.pathways_gmt, train.genes, sources.gmt_min_genes,
                                    sources.gmt_max_genes or None, sources.gmt_max_pathways or None)
    elif train.gene_knowledge is not None:
        sets = train.gene_knowledge.gene_sets(train.genes)
        chosen = sorted(sets.items(), key=lambda item: (-len(item[1]), item[0]))[:max_pathways]
    else:
        chosen = []
    index = {g: i for i, g in enumerate(train.genes)}
    return [np.array([index[g] for g in members]) for _, members in chosen]


class ConditionFeatures:
    """Fixed feature vectors of perturbed genes: ``[GO, data PCA loadings, ESM, flags of which exist]``."""

    def __init__(self, train: TrainData, perturbed: list[str], n_components: int, sources: Sources):
        self.genes = GeneFeatures.fit(train, perturbed, n_components)
        self.esm_path = sources.esm_features
        self.esm_dim = 0
        if self.esm_path:
            self.esm_dim = resources.read_esm_features(self.esm_path, perturbed)[0].shape[1]

    @property
    def dim(self) -> int:
        return self.genes.go_dim + self.genes.data_dim + self.esm_dim + 3

    def lookup(self, genes: list[str]) -> np.ndarray:
        go, data = self.genes.lookup(genes)
        esm = np.zeros((len(genes), 0), dtype=np.float32)
        found = np.zeros(len(genes), dtype=bool)
        if self.esm_dim:
            esm, found = resources.read_esm_features(self.esm_path, genes)
        flags = np.stack([np.abs(go).sum(axis=1) > 0, np.abs(data).sum(axis=1) > 0, found], axis=1)
        return np.hstack([go, data, esm, flags.astype(np.float32)]).astype(np.float32)
