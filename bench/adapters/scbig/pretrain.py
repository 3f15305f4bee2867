"""Autoencoder pre-training of the GCAE (scBIG): MSE reconstruction, Adam, early stopping.

Every epoch the reconstruction error of held-out cells is measured; training stops after ``patience``
epochs without improvement and the best weights are kept. Held-out cells are the validation cells when
there are at least ``MIN_HELD_OUT`` of them, else a seeded 10% of the training cells (kept out of the
gradient steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.adapters.early_stopping import BestWeights
from bench.adapters.torch_runtime import dense_rows

MIN_HELD_OUT = 64


@dataclass
class PretrainSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int


def held_out_split(train_x, val_x, rng: np.random.Generator):
    """``(training rows, held-out matrix)``: validation cells, or 10% of the training cells."""
    rows = np.arange(train_x.shape[0])
    if val_x is not None and val_x.shape[0] >= MIN_HELD_OUT:
        return rows, val_x
    held = np.zeros(len(rows), dtype=bool)
    held[rng.choice(len(rows), size=max(1, len(rows) // 10), replace=False)] = True
    return rows[~held], train_x[np.flatnonzero(held)]


def reconstruction_error(net: torch.nn.Module, x, device: str, batch_size: int) -> float:
    net.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            block = dense_rows(x, np.arange(start, min(start + batch_size, x.shape[0])), device)
            total += float(((net(block) - block) ** 2).mean(dim=1).sum())
    return total / max(x.shape[0], 1)


def pretrain(net: torch.nn.Module, train_x, val_x, settings: PretrainSettings, rng: np.random.Generator,
             device: str) -> float:
    """Train ``net`` in place; return the best held-out reconstruction MSE."""
    rows, held_out = held_out_split(train_x, val_x, rng)
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    best = BestWeights(settings.patience, reconstruction_error(net, held_out, device, settings.batch_size))
    for epoch in range(1, settings.epochs + 1):
        net.train()
        order = rng.permutation(rows)
        for start in range(0, len(order), settings.batch_size):
            block = dense_rows(train_x, np.sort(order[start:start + settings.batch_size]), device)
            loss = ((net(block) - block) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        error = reconstruction_error(net, held_out, device, settings.batch_size)
        if best.update(net, error):
            break
    best.restore(net)
    net.eval()
    return best.best
