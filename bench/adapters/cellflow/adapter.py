"""The ``cellflow`` card: the official CellFlow (Klein et al. 2025; cellflow-tools 0.0.9, licence PolyForm
Noncommercial), run in its own environment (``bench env create cellflow``) by ``worker.py``; this side writes
the perturbed genes' feature vectors and holds the parameters. ``docs/cellflow.md`` maps each parameter to
CellFlow's own argument and to the paper's Norman settings.

Gene features are scBIG's condition features (``scbig.priors.ConditionFeatures``): ESM2 vectors from
``esm_features`` as the paper uses, else the offline GO embedding and data loadings. A gene with none gets a
zero vector, which CellFlow reads as "no gene" (its pooling masks zero tokens), so such a gene is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.adapters.kit.environment_adapter import EnvironmentAdapter
from bench.adapters.kit.params import Params, param
from bench.adapters.scbig.priors import ConditionFeatures, PriorParams
from bench.core.api import PredictQuery, TrainData
from bench.core.conditions import perturbed_genes
from bench.core.errors import ModelError


@dataclass(frozen=True)
class CellflowParams(Params):
    """Defaults: a CPU-practical CellFlow (the card's ``paper`` preset is the paper's Norman run). Names follow
    ``CellFlow.prepare_model`` and ``train``; an MLP of ``*_layers`` layers of ``*_width`` stands for a dims list."""

    n_components: int = param(50, "[2, inf)")
    condition_embedding_dim: int = param(256, "[1, inf)")
    pooling: str = param("attention_token", choices=("mean", "attention_token", "attention_seed"))
    layers_before_pool: int = param(2, "[0, inf)")
    width_before_pool: int = param(256, "[1, inf)")
    dropout_before_pool: float = param(0.5, "[0, 1)")
    layers_after_pool: int = param(1, "[0, inf)")
    width_after_pool: int = param(256, "[1, inf)")
    dropout_after_pool: float = param(0.2, "[0, 1)")
    cond_output_dropout: float = param(0.5, "[0, 1)")
    time_freqs: int = param(1024, "[1, inf)")
    time_encoder_width: int = param(256, "[1, inf)")
    time_encoder_layers: int = param(2, "[1, inf)")
    hidden_width: int = param(512, "[1, inf)")
    hidden_layers: int = param(2, "[1, inf)")
    hidden_dropout: float = param(0.0, "[0, 1)")
    decoder_width: int = param(512, "[1, inf)")
    decoder_layers: int = param(2, "[1, inf)")
    decoder_dropout: float = param(0.2, "[0, 1)")
    noise: float = param(1.0, "[0, inf)")
    ot_epsilon: float = param(0.1, "(0, inf)")
    learning_rate: float = param(1e-4, "(0, inf)")
    gradient_accumulation: int = param(1, "[1, inf)")
    num_iterations: int = param(2000, "[1, inf)")
    batch_size: int = param(256, "[1, inf)")
    valid_freq: int = param(500, "[1, inf)")
    validation_conditions: int = param(5, "[1, inf)")
    ode_solver: str = param("euler", choices=("euler", "tsit5"))
    dt0: float = param(0.05, "(0, 1]")
    rtol: float = param(1e-5, "(0, inf)")
    atol: float = param(1e-5, "(0, inf)")
    max_cells: int = param(500, "[1, inf)")
    feature_components: int = param(10, "[1, inf)")
    esm_features: str = param("")
    threads: int = param(0, "[0, inf)")


class CellflowModel(EnvironmentAdapter):
    Params = CellflowParams
    WORKER = Path(__file__).with_name("worker.py")
    name = "cellflow"

    def check_queries(self, train: TrainData, queries: dict[str, list[str]]) -> None:
        """A test gene without features is refused now, not after training (``fit`` then reuses the features)."""
        self.features, self._features_for = self._features(train), train
        self._known(sorted(perturbed_genes(c for conditions in queries.values() for c in conditions)), strict=True)

    def fit_inputs(self, train: TrainData, folder: Path) -> dict:
        if getattr(self, "_features_for", None) is not train:
            self.features = self._features(train)
        genes = self._training_genes(train)
        return {"features": self._write(folder / "features-fit.npz", genes, strict=False)}

    def predict_inputs(self, query: PredictQuery, folder: Path) -> dict:
        genes = sorted(perturbed_genes(query.conditions))
        return {"features": self._write(folder / "features-predict.npz", genes, strict=True)}

    @staticmethod
    def _training_genes(train: TrainData) -> list[str]:
        return sorted(perturbed_genes(set(train.conditions) | set(train.val.obs["condition"].astype(str))))

    def _features(self, train: TrainData) -> ConditionFeatures:
        priors = PriorParams(n_components=self.params.feature_components, esm_features=self.params.esm_features)
        return ConditionFeatures(train, self._training_genes(train), priors)

    def _known(self, genes: list[str], strict: bool) -> tuple[np.ndarray, np.ndarray]:
        """The genes' feature vectors and which have any; with ``strict``, a gene without any is an error."""
        vectors = self.features.lookup(genes)
        known = np.abs(vectors).sum(axis=1) > 0
        if strict and not known.all():
            missing = ", ".join(g for g, k in zip(genes, known) if not k)
            raise ModelError(f"CellFlow has no features for gene(s) {missing} (neither measured nor annotated, "
                             "nor in esm_features); it cannot tell them from no perturbation")
        return vectors, known

    def _write(self, path: Path, genes: list[str], strict: bool) -> str:
        """The genes' feature vectors; a gene without any is left out (training, validation: its conditions
        are not learned from) or an error (a query)."""
        vectors, known = self._known(genes, strict)
        np.savez(path, genes=np.array(genes, dtype=object)[known].astype(str), vectors=vectors[known])
        return path.name
