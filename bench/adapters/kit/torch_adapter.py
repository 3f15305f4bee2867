"""The base class of a torch adapter: threads and seeding around ``fit`` and ``predict``."""

from __future__ import annotations

from bench.adapters.kit.base import Adapter
from bench.adapters.kit.torch_runtime import seeded_torch, torch_threads
from bench.core.api import Prediction, PredictQuery, TrainData


class TorchAdapter(Adapter):
    """An ``Adapter`` whose ``Params`` has ``threads`` (torch intra-op threads, 0: torch's setting) and
    that writes ``_fit`` and ``_predict``. Both run on ``threads`` threads (the setting is restored
    after); ``_fit`` runs with torch's global generators seeded with ``train.seed`` (the caller's state
    is restored), so weights and dropout are reproducible. Draws at prediction are the adapter's, from
    ``query.seed``."""

    def fit(self, train: TrainData) -> None:
        with torch_threads(self.params.threads), seeded_torch(train.seed, train.device):
            self._fit(train)

    def predict(self, query: PredictQuery) -> Prediction:
        with torch_threads(self.params.threads):
            return self._predict(query)

