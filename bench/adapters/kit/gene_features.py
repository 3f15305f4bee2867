"""Prior features of perturbed genes, from which a model maps an embedding for any gene (CPA, scBIG).

Two sources, each used only when at least ``MIN_GENES`` genes perturbed in training have it (so that a
map from it can be learned), and each optional per gene:

- ``go``: the harness's Gene Ontology embedding (``TrainData.gene_knowledge``), for annotated genes;
- ``data``: the gene's loadings on the first K principal components of the training pseudobulk (as in
  the linear baseline of Ahlmann-Eltze et al., Nat Methods 2025), for measured genes; scaled so that
  rows have mean norm 1 over the measured genes.

A gene with neither (unmeasured and unannotated, e.g. a synthetic gene outside the panel) gets all-zero
features; the model then gives it the mean embedding of the training genes (see ``inference``).
"""

from __future__ import annotations

import numpy as np

from bench.core import linalg
from bench.core.api import GeneKnowledge, TrainData

MIN_GENES = 2


class GeneFeatures:
    """Looks up ``go`` and ``data`` features of genes; a disabled source has width 0."""

    def __init__(self, knowledge: GeneKnowledge | None, genes: list[str], loadings: np.ndarray, go_dim: int):
        self.knowledge = knowledge
        self.gene_index = {g: i for i, g in enumerate(genes)}
        self.loadings = loadings
        self.go_dim = go_dim

    @property
    def data_dim(self) -> int:
        return self.loadings.shape[1]

    @classmethod
    def fit(cls, train: TrainData, perturbed: list[str], n_components: int) -> GeneFeatures:
        bulk = train.pseudobulk().to_numpy(dtype=np.float64)
        k = min(n_components, min(bulk.shape) - 1)
        genes = train.genes
        measured = len(set(perturbed) & set(genes))
        if k < 1 or measured < MIN_GENES:
            loadings = np.zeros((len(genes), 0))
        else:
            loadings = linalg.principal_axes(bulk, k)[2].T
            loadings = loadings / max(np.linalg.norm(loadings, axis=1).mean(), 1e-12)
        go_dim = 0
        if train.gene_knowledge is not None:
            embeddings, found = train.gene_knowledge.embeddings(perturbed)
            if found.sum() >= MIN_GENES:
                go_dim = embeddings.shape[1]
        return cls(train.gene_knowledge, genes, loadings.astype(np.float32), go_dim)

    def lookup(self, genes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(go, data)`` feature matrices for ``genes``; rows of genes lacking a source are zero."""
        go = np.zeros((len(genes), self.go_dim), dtype=np.float32)
        if self.go_dim and genes:
            embeddings, found = self.knowledge.embeddings(genes)
            go[found] = embeddings[found]
        data = np.zeros((len(genes), self.data_dim), dtype=np.float32)
        rows = [(i, self.gene_index[g]) for i, g in enumerate(genes) if g in self.gene_index]
        if rows and self.data_dim:
            at, source = zip(*rows)
            data[list(at)] = self.loadings[list(source)]
        return go, data
