"""Conditional flow matching in the latent, from control cells to perturbed cells (scBIG's generator,
CellFlow-style OT flow matching; Tong et al. 2024, Klein et al. 2025).

- Condition: each perturbed gene's prior features (``priors.ConditionFeatures``) are mapped to
  ``width``, and a condition's (at most two) genes are pooled without regard to their order: an
  attention-weighted mean together with the plain sum (a weighted mean alone cannot tell the double
  A+B from a single gene whose vector lies between A's and B's); a cell-type embedding is added (cell
  types unseen in training add nothing). A gene never perturbed in training still has features, so it
  still gets a condition.
- Path: ``x_t = (1 - t) x0 + t x1 + noise * eps`` (constant noise), target velocity ``x1 - x0``, with
  ``(x0, x1)`` paired by the exact optimal transport plan of the minibatch (squared Euclidean cost).
- Velocity: an MLP on ``[x_t, time features, condition]`` (``layers`` x ``hidden``, dropout).
- Inference: a fixed-step midpoint ODE solve from control latents at t = 0 to t = 1 (differentiable, so
  the structure losses can backpropagate through it).
"""

from __future__ import annotations

import math

import numpy as np
import ot
import torch
from torch import nn

from bench.conditions import genes_of

TIME_FEATURES = 16


class ConditionEncoder(nn.Module):
    def __init__(self, feature_dim: int, width: int, n_cell_types: int):
        super().__init__()
        self.gene = nn.Sequential(nn.Linear(feature_dim, width), nn.GELU(), nn.Linear(width, width))
        self.score = nn.Linear(width, 1)
        self.combine = nn.Linear(2 * width, width)
        self.cell_type = nn.Embedding(n_cell_types + 1, width, padding_idx=n_cell_types)

    def forward(self, features: torch.Tensor, present: torch.Tensor, cell_type: torch.Tensor) -> torch.Tensor:
        """``features`` (C, G, F), ``present`` (C, G) bool, ``cell_type`` (C,) -> (C, width)."""
        genes = self.gene(features)
        weights = torch.softmax(self.score(genes).squeeze(-1).masked_fill(~present, -torch.inf), dim=1)
        attended = (weights.unsqueeze(-1) * genes).sum(dim=1)
        summed = (present.unsqueeze(-1) * genes).sum(dim=1)
        return self.combine(torch.cat([attended, summed], dim=1)) + self.cell_type(cell_type)


def time_features(t: torch.Tensor) -> torch.Tensor:
    frequencies = torch.exp(torch.arange(TIME_FEATURES // 2, device=t.device) * (-math.log(1000.0) / 8))
    angles = t[:, None] * frequencies[None, :] * math.pi
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class VelocityField(nn.Module):
    def __init__(self, latent_dim: int, condition_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        blocks, width = [], latent_dim + TIME_FEATURES + condition_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.SiLU(), nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, latent_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, time_features(t), condition], dim=1))


def ot_pairs(x0: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
    """For each target cell, its source cell under the exact minibatch OT plan (equal-sized batches with
    uniform weights: the plan is a permutation)."""
    cost = torch.cdist(x1.detach().float(), x0.detach().float()).pow(2).cpu().double().numpy()
    uniform = np.full(len(x1), 1.0 / len(x1))
    return ot.emd(uniform, uniform, cost).argmax(axis=1)


def path_loss(velocity: VelocityField, x0: torch.Tensor, x1: torch.Tensor, condition: torch.Tensor,
              noise: float) -> torch.Tensor:
    """Flow-matching loss on one coupled minibatch (``condition`` (1, width) is broadcast)."""
    t = torch.rand(len(x1), device=x1.device)
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1 + noise * torch.randn_like(x1)
    predicted = velocity(xt, t, condition.expand(len(x1), -1))
    return ((predicted - (x1 - x0)) ** 2).mean()


def solve(velocity: VelocityField, x0: torch.Tensor, condition: torch.Tensor, steps: int) -> torch.Tensor:
    """Midpoint-rule integration of the velocity field from t = 0 to t = 1."""
    x, h = x0, 1.0 / steps
    condition = condition.expand(len(x0), -1)
    for i in range(steps):
        t = torch.full((len(x0),), i * h, device=x0.device)
        half = x + 0.5 * h * velocity(x, t, condition)
        x = x + h * velocity(half, t + 0.5 * h, condition)
    return x


class ConditionalFlow(nn.Module):
    """The condition encoder and the velocity field, with the fixed gene features of every condition."""

    def __init__(self, features, cell_types: list[str], latent_dim: int, width: int, hidden: int, layers: int,
                 dropout: float):
        super().__init__()
        self.features = features
        self.cell_types = cell_types
        self.encoder = ConditionEncoder(features.dim, width, len(cell_types))
        self.velocity = VelocityField(latent_dim, width, hidden, layers, dropout)
        self._inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _condition_inputs(self, condition: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if condition not in self._inputs:
            genes = genes_of(condition)
            features = np.zeros((1, max(len(genes), 2), self.features.dim), dtype=np.float32)
            features[0, : len(genes)] = self.features.lookup(list(genes))
            present = torch.arange(features.shape[1]) < len(genes)
            self._inputs[condition] = (torch.from_numpy(features).to(device), present[None].to(device))
        return self._inputs[condition]

    def condition(self, condition: str, cell_type: str) -> torch.Tensor:
        """The (1, width) condition vector of ``condition`` in ``cell_type``."""
        device = self.encoder.score.weight.device
        features, present = self._condition_inputs(condition, device)
        code = self.cell_types.index(cell_type) if cell_type in self.cell_types else len(self.cell_types)
        return self.encoder(features, present, torch.tensor([code], device=device))
