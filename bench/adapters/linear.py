"""The linear baseline of Ahlmann-Eltze, Huber & Anders (Nature Methods 2025).

Training pseudobulk changes ``Y`` (genes x training perturbations) are fitted as ``Y ≈ G W Pᵀ + b``:
``G`` (genes x K) holds the genes' loadings on the first K principal components of the training
pseudobulk, ``P`` (perturbations x K) embeds a perturbation as the sum of the ``G`` rows of its
perturbed genes, ``b`` is the mean training change, and ``W`` is the closed-form ridge solution
``W = (GᵀG + λI)⁻¹ Gᵀ (Y − b) P (PᵀP + λI)⁻¹``. A perturbed gene that is not measured has no ``G`` row;
it gets one from its Gene Ontology embedding through a ridge map fitted on the measured genes that have
both; a gene with neither contributes nothing (the prediction falls back to ``b``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.adapters.kit.base import Adapter
from bench.adapters.kit.effects import Effects, prediction
from bench.adapters.kit.params import Params, param
from bench.core import linalg
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import CONTROL, genes_of


def ridge_solve(a: np.ndarray, b: np.ndarray, ridge: float) -> np.ndarray:
    """argmin_X ||a X − b||² + ridge ||X||²."""
    return np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ b)


@dataclass(frozen=True)
class LinearParams(Params):
    """``n_components`` (K); ``ridge`` (λ); ``go_ridge``, the penalty of the map from GO embeddings."""

    n_components: int = param(10, "[1, inf)")
    ridge: float = param(0.1, "[0, inf)")
    go_ridge: float = param(1.0, "[0, inf)")


class LinearModel(Adapter):
    Params = LinearParams

    def fit(self, train: TrainData) -> None:
        self.effects = Effects.of(train)
        bulk = train.pseudobulk().to_numpy()
        k = max(1, min(self.params.n_components, min(bulk.shape) - 1))
        self.gene_index = {g: i for i, g in enumerate(train.genes)}
        self.G = linalg.principal_axes(bulk, k)[2].T
        self.knowledge = train.gene_knowledge
        self._fit_go_map(train.genes)
        delta = self.effects.delta
        conditions = delta.index.get_level_values("condition")
        Y = delta.to_numpy().T
        self.b = Y.mean(axis=1, keepdims=True)
        P = np.stack([self.embed(c) for c in conditions])
        left = np.linalg.solve(self.G.T @ self.G + self.params.ridge * np.eye(k), self.G.T @ (Y - self.b))
        self.W = left @ P @ np.linalg.inv(P.T @ P + self.params.ridge * np.eye(k))

    def _fit_go_map(self, genes: list[str]) -> None:
        """Ridge map from GO embeddings to PCA loadings, fitted on measured genes that have both."""
        self.go_map = None
        if self.knowledge is None:
            return
        embeddings, found = self.knowledge.embeddings(genes)
        if found.sum() >= 2:
            self.go_map = ridge_solve(embeddings[found].astype(np.float64), self.G[found], self.params.go_ridge)

    def gene_row(self, gene: str) -> np.ndarray:
        if gene in self.gene_index:
            return self.G[self.gene_index[gene]]
        if self.go_map is not None:
            embedding, found = self.knowledge.embeddings([gene])
            if found[0]:
                return embedding[0].astype(np.float64) @ self.go_map
        return np.zeros(self.G.shape[1])

    def embed(self, condition: str) -> np.ndarray:
        return np.sum([self.gene_row(g) for g in genes_of(condition)], axis=0) if condition != CONTROL else 0.0

    def predict(self, query: PredictQuery) -> Prediction:
        base = self.effects.baseline(query.cell_type)
        rows = {c: base + (self.G @ self.W @ self.embed(c) + self.b[:, 0]) for c in query.conditions}
        return prediction(query, rows)
