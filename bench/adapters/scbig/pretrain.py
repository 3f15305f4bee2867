"""Autoencoder pre-training of the GCAE as the official release does it.

Official sources (``ttruan2426-dot/scBIG`` @ 5659ce9): ``GCAEWrapper.fit`` in
``scbig/models/_gcae_impl.py`` (``IMPL:line``) and the encoder-validation cells of
``scbig/experiments/train_norman_additive.py`` (``TNA:line``). Official values: Adam 1e-4 (TNA:1475),
batch 256, 100 epochs, validation every 5 epochs on at most 300 cells, patience 4 evaluations, minimum
improvement 0 (TNA:1091-1102, run script ``--encoder_n_epochs 100 --encoder_batch_size 256``).

Deviations: the epoch permutations come from the caller's NumPy generator and dropout from torch's
(official: a JAX key chain from ``PRNGKey(0)``, IMPL:1729, 1774-1775); the 200 000-cell cap on the
encoder's training rows (TNA:1767-1772) is left to the caller; the training-control hold-out is capped
at half the training controls (see ``encoder_validation_rows``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from bench.adapters.kit.early_stopping import BestWeights
from bench.adapters.kit.params import Params, param
from bench.adapters.kit.torch_runtime import dense_rows
from bench.adapters.scbig.clustering import gene_order
from bench.adapters.scbig.encoder import EncoderParams, GeneClusterAwareEncoder, PCALatent
from bench.core import linalg
from bench.core.api import TrainData, no_progress
from bench.core.conditions import CONTROL

PCA_CELLS = 5000  # the training cells (at most) a PCA is fitted on: the PCA latent's, the offline gene embeddings'


@dataclass(frozen=True)
class PretrainParams(Params):
    """The GCAE's pre-training (card names ``ae_*``); defaults are the official run's values."""

    epochs: int = param(100, "[0, inf)", name="ae_epochs")
    batch_size: int = param(256, "[1, inf)", name="ae_batch_size")
    learning_rate: float = param(1e-4, "(0, inf)", name="ae_learning_rate")
    eval_every: int = param(5, "[0, inf)", name="ae_eval_every")
    patience: int = param(4, "[0, inf)", name="ae_patience")
    eval_cells: int = param(300, "[1, inf)", name="ae_eval_cells")


def _subsample(indices: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``indices`` if at most ``n``, else ``n`` of them drawn without replacement with
    ``default_rng(seed)``, sorted (``sample_encoder_eval_subset``, TNA:220-227)."""
    if indices.size <= n:
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, size=n, replace=False))


def encoder_validation_rows(train_x, train_controls: np.ndarray, val_x, val_controls: np.ndarray,
                            eval_cells: int, seed: int) -> tuple[np.ndarray, object]:
    """``(training rows, validation matrix)`` for the encoder: the rows of ``train_x`` the encoder trains
    on and the cells (rows of ``val_x`` or ``train_x``, same matrix type) its early stopping reads.

    ``train_controls`` / ``val_controls``: boolean control masks of the rows of ``train_x`` / ``val_x``
    (``val_x`` may be None or have no rows). Official priority (``prepare_encoder_eval_subset``,
    TNA:240-299, controls only as ``--encoder_eval_controls_only 1``), each source sampled as
    ``_subsample`` with the seed offset the official code uses:

    1. the validation split's controls, at most ``eval_cells`` (seed ``seed``); all training rows train;
    2. else training controls held out from the encoder's training rows (seed ``seed + 1``,
       TNA:1692-1700). Official holds out up to ``eval_cells`` (300), i.e. every control of a small
       dataset (norman_subset has 100); here at most ⌊n_train_controls / 2⌋, so the encoder still sees
       controls. (Official's third source, test controls, does not exist here: the harness never shows
       the test split to a model.)
    3. else at most ``eval_cells`` validation cells of any condition (seed ``seed + 97``, TNA:277-282);
       no validation cells at all gives an empty matrix (no evaluation, last weights kept).
    """
    if eval_cells <= 0:
        raise ValueError(f"eval_cells must be positive, got {eval_cells}")
    rows = np.arange(train_x.shape[0])
    n_val = 0 if val_x is None else val_x.shape[0]
    val_control_rows = np.flatnonzero(np.asarray(val_controls, dtype=bool)) if n_val else np.array([], int)
    if val_control_rows.size:
        return rows, val_x[_subsample(val_control_rows, eval_cells, seed)]
    train_control_rows = np.flatnonzero(np.asarray(train_controls, dtype=bool))
    n_held = min(eval_cells, train_control_rows.size // 2)
    if n_held:
        held = _subsample(train_control_rows, n_held, seed + 1)
        return np.setdiff1d(rows, held), train_x[held]
    if n_val:
        return rows, val_x[_subsample(np.arange(n_val), eval_cells, seed + 97)]
    return rows, train_x[np.array([], dtype=np.int64)]


def validation_error(net: torch.nn.Module, x, batch_size: int, device: str) -> float:
    """Official validation loss (IMPL:1815-1832): dropout off, consecutive batches of ``batch_size``
    cells, the MEAN OF THE BATCH MSEs (a short last batch weighs as much as a full one)."""
    net.eval()
    errors = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            block = dense_rows(x, np.arange(start, min(start + batch_size, x.shape[0])), device)
            errors.append(float(((net(block) - block) ** 2).mean()))
    return float(np.mean(errors))


def pretrain(net: torch.nn.Module, train_x, val_x, params: PretrainParams, rng: np.random.Generator,
             device: str, progress: Callable[..., None] = no_progress) -> float:
    """Train ``net`` (an autoencoder, ``net(x) ≈ x``) in place on the rows of ``train_x`` (the
    encoder's training rows); return the best validation error (inf if never evaluated).

    As ``GCAEWrapper.fit`` (IMPL:1675-1880): loss = MSE over batch x genes (IMPL:1500; ``net`` adds the
    mean back, so this equals the official loss on centred genes); Adam; each epoch a fresh permutation
    of the rows, the last partial batch kept, dropout on (IMPL:1772-1799); after every ``eval_every``-th
    epoch (``(epoch+1) % eval_every == 0``, none before training) ``validation_error`` on ``val_x``;
    improvement = strictly lower; stop once ``patience`` evaluations in a row brought none (0: never)
    (IMPL:1806-1866); the best weights are restored at the end, the last ones if never evaluated
    (IMPL:1868-1871). ``val_x`` None, empty or ``eval_every <= 0``: no evaluation. ``progress`` hears
    the epochs done.
    """
    optimiser = torch.optim.Adam(net.parameters(), lr=params.learning_rate)
    best = BestWeights(params.patience)
    evaluates = val_x is not None and val_x.shape[0] > 0 and params.eval_every > 0
    n_rows = train_x.shape[0]
    for epoch in range(1, params.epochs + 1):
        progress("pre-training the autoencoder", epoch - 1, params.epochs)
        net.train()
        order = rng.permutation(n_rows)
        for start in range(0, n_rows, params.batch_size):
            block = dense_rows(train_x, order[start:start + params.batch_size], device)
            loss = ((net(block) - block) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if evaluates and epoch % params.eval_every == 0:
            if best.update(net, validation_error(net, val_x, params.batch_size, device)):
                break
    best.restore(net)
    net.eval()
    return float(best.best)


def pca_latent(x, components: int, rng: np.random.Generator, device: str) -> PCALatent:
    """``PCALatent`` of at most ``PCA_CELLS`` rows of ``x`` drawn with ``rng``."""
    rows = linalg.sample_rows(x.shape[0], rng, PCA_CELLS)
    sample = x[rows].toarray() if sp.issparse(x) else np.asarray(x[rows])
    return PCALatent(sample.astype(np.float64), components).to(device)


def fit_latent(train: TrainData, labels: np.ndarray, positional: np.ndarray, encoder: EncoderParams,
               params: PretrainParams, rng: np.random.Generator) -> torch.nn.Module:
    """The latent's autoencoder fitted to the training cells: PCA, or the GCAE over the genes sorted by
    their cluster ``labels``, pre-trained on the rows and validated on the cells of ``encoder_validation_rows``."""
    x = train.cells.X
    if encoder.latent == "pca":
        return pca_latent(x, encoder.latent_dim, rng, train.device)
    controls = train.cells.obs["condition"].astype(str).to_numpy() == CONTROL
    val_controls = train.val.obs["condition"].astype(str).to_numpy() == CONTROL
    rows, val_x = encoder_validation_rows(x, controls, train.val.X, val_controls, params.eval_cells, train.seed)
    gene_mean = dense_rows(x, rows, "cpu").double().mean(dim=0).numpy()
    net = GeneClusterAwareEncoder(gene_order(labels), gene_mean, positional, **encoder.gcae()).to(train.device)
    pretrain(net, x[rows], val_x, params, rng, train.device, train.progress)
    return net
