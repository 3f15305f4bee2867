"""Simple baselines that any learned model must beat.

- ``ControlModel``: predicts no change (the training-control mean).
- ``MeanModel``: predicts the mean change of all training perturbations.
- ``AdditiveModel``: control plus the sum of the perturbed genes' single-gene changes; a gene without
  a training single contributes the mean change instead (as in Ahlmann-Eltze et al., Nat Methods 2025).
"""

from __future__ import annotations

import numpy as np

from bench.adapters.kit.base import Adapter
from bench.adapters.kit.effects import Effects, prediction
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import genes_of


class _EffectsModel(Adapter):
    effects: Effects

    def fit(self, train: TrainData) -> None:
        self.effects = Effects.of(train)


class ControlModel(_EffectsModel):
    def predict(self, query: PredictQuery) -> Prediction:
        base = self.effects.baseline(query.cell_type)
        return prediction(query, {c: base for c in query.conditions})


class MeanModel(_EffectsModel):
    def predict(self, query: PredictQuery) -> Prediction:
        shifted = self.effects.baseline(query.cell_type) + self.effects.mean_change(query.cell_type)
        return prediction(query, {c: shifted for c in query.conditions})


class AdditiveModel(_EffectsModel):
    def predict(self, query: PredictQuery) -> Prediction:
        changes = self.effects.of_cell_type(query.cell_type)
        fallback = self.effects.mean_change(query.cell_type)
        base = self.effects.baseline(query.cell_type)
        rows = {}
        for condition in query.conditions:
            single = [changes.loc[g].to_numpy() if g in changes.index else fallback for g in genes_of(condition)]
            rows[condition] = base + np.sum(single, axis=0)
        return prediction(query, rows)
