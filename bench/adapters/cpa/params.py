"""The parameters of the CPA-style adapter, their defaults (the ``cpa`` card's) and allowed values."""

from __future__ import annotations

from dataclasses import dataclass

from bench.adapters.kit.params import Params, param

LIKELIHOODS = ("auto", "gaussian", "nb")
ENCODER_INPUTS = ("cell", "control")


@dataclass(frozen=True)
class CPAParams(Params):
    """``latent_dim``; ``hidden_dim`` and ``n_layers`` of encoder and decoder (0: linear); ``dropout``;
    Adam's ``learning_rate``; ``batch_size``; at most ``epochs``, stopping after ``patience`` epochs
    without a better validation MSE; ``adversary_weight`` (0: no adversary) and the adversary's
    ``adversary_hidden``; ``encoder_input`` ``cell`` (CPA) or ``control`` (latent additive);
    ``residual_dropout``; ``n_components`` of the data-derived gene features; ``likelihood`` ``auto``,
    ``gaussian`` or ``nb``; ``max_cells`` control cells per query to start from; torch ``threads``."""

    latent_dim: int = param(64, "[1, inf)")
    hidden_dim: int = param(256, "[1, inf)")
    n_layers: int = param(1, "[0, inf)")
    dropout: float = param(0.1, "[0, 1)")
    learning_rate: float = param(1e-3, "(0, inf)")
    batch_size: int = param(128, "[1, inf)")
    epochs: int = param(200, "[0, inf)")
    patience: int = param(20, "[1, inf)")
    adversary_weight: float = param(30.0, "[0, inf)")
    adversary_hidden: int = param(128, "[1, inf)")
    encoder_input: str = param("cell", choices=ENCODER_INPUTS)
    residual_dropout: float = param(0.25, "[0, 1)")
    n_components: int = param(10, "[1, inf)")
    likelihood: str = param("auto", choices=LIKELIHOODS)
    max_cells: int = param(256, "[1, inf)")
    threads: int = param(0, "[0, inf)")
