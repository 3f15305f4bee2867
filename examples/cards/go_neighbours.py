"""GO neighbours: a seen gene's effect is its training single's; an unseen gene borrows the mean effect of
the seen genes nearest to it by Gene Ontology embedding (cosine similarity, weighted); a double adds its
genes' effects to the control mean. A whole adapter in one file, beside its card."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.adapters.kit.base import Adapter
from bench.adapters.kit.effects import Effects, prediction
from bench.adapters.kit.params import Params, param
from bench.core.api import DataProperties, Prediction, PredictQuery, TrainData
from bench.core.conditions import genes_of, is_single


@dataclass(frozen=True)
class GoNeighboursParams(Params):
    neighbours: int = param(5, "[1, inf)")  # seen genes an unseen gene borrows from
    shrink: float = param(1.0, "[0, 1]")  # weight of a borrowed effect (0: an unseen gene changes nothing)


class GoNeighbours(Adapter):
    Params = GoNeighboursParams

    @classmethod
    def skip(cls, params: GoNeighboursParams, data: DataProperties) -> str | None:
        return None if data.n_genes > 1 else "needs more than one measured gene"

    def fit(self, train: TrainData) -> None:
        self.effects = Effects.of(train)
        self.knowledge = train.gene_knowledge

    def predict(self, query: PredictQuery) -> Prediction:
        table = self.effects.of_cell_type(query.cell_type)
        seen = {c: table.loc[c].to_numpy() for c in table.index if is_single(c)}
        base = self.effects.baseline(query.cell_type)
        rows = {}
        for condition in query.conditions:
            rows[condition] = base + sum(seen[g] if g in seen else self._borrowed(g, seen)
                                         for g in genes_of(condition))
        return prediction(query, rows)

    def _borrowed(self, gene: str, seen: dict[str, np.ndarray]) -> np.ndarray:
        """The similarity-weighted mean effect of the ``neighbours`` seen genes nearest to ``gene``."""
        nothing = np.zeros(len(self.effects.genes))
        if self.knowledge is None or not seen:
            return nothing
        vectors, known = self.knowledge.embeddings([gene, *seen])
        if not known[0] or not known[1:].any():
            return nothing
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        similarity = np.where(known[1:], unit[1:] @ unit[0], -np.inf)
        nearest = np.argsort(-similarity)[: self.params.neighbours]
        weights = np.clip(similarity[nearest], 0, None)
        if weights.sum() == 0:
            return nothing
        effects = np.stack(list(seen.values()))[nearest]
        return self.params.shrink * weights @ effects / weights.sum()
