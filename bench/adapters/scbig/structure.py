"""scBIG's structure-aware alignment losses between decoded predicted cells and observed cells of one
condition, as the official release computes them (``scbig/losses/gene_losses.py``).

- Cluster correlation (``compute_correlation_matrix``, ``cluster_correlation_loss``): genes are averaged
  to cluster means Z (cells x K); each column is standardised by its population standard deviation
  (at least 1e-6) and clipped to [-10, 10]; corr(Z) = Zsᵀ Zs / N; the loss is
  ``||corr(Z_pred) - corr(Z_true)||_F / K``.
- Pathway OT (``sinkhorn_distance``, ``pathway_ot_loss``): genes are averaged to pathway means P
  (cells x pathways); the cost is the squared Euclidean distance between predicted and observed cells
  in that space, not rescaled; 50 kernel-domain Sinkhorn iterations at epsilon 0.1 with uniform
  weights (``u = a / (K v + 1e-10)``, ``v = b / (Kᵀ u + 1e-10)``); the loss is ``Σ T·C`` divided by the
  number of pathways. Kept in the kernel domain as released: where ``C / epsilon`` exceeds float32's
  range the kernel underflows to 0 and that part of the plan (and its gradient) vanishes, as it does
  in the official run.
Both are differentiable in the predicted cells.
"""

from __future__ import annotations

import numpy as np
import torch

STD_FLOOR = 1e-6
CLIP = 10.0
SINKHORN_GUARD = 1e-10


def membership(groups: list[np.ndarray], n_genes: int, device: str) -> torch.Tensor:
    """(genes x groups) matrix whose column g averages group g's genes."""
    matrix = torch.zeros(n_genes, len(groups))
    for j, genes in enumerate(groups):
        matrix[genes, j] = 1.0 / max(len(genes), 1)
    return matrix.to(device)


def correlation(z: torch.Tensor) -> torch.Tensor:
    """Correlation of the columns of ``z`` (cells x features) after the official standardise-and-clip."""
    centred = z - z.mean(dim=0, keepdim=True)
    scale = centred.pow(2).mean(dim=0, keepdim=True).sqrt().clamp_min(STD_FLOOR)
    standardised = (centred / scale).clamp(-CLIP, CLIP)
    return standardised.T @ standardised / len(z)


def cluster_correlation_loss(predicted: torch.Tensor, observed: torch.Tensor, clusters: torch.Tensor) -> torch.Tensor:
    k = clusters.shape[1]
    return torch.linalg.matrix_norm(correlation(predicted @ clusters) - correlation(observed @ clusters)) / k


def sinkhorn_cost(a: torch.Tensor, b: torch.Tensor, epsilon: float = 0.1, iterations: int = 50) -> torch.Tensor:
    """Entropic OT cost ``Σ T·C`` between the rows of ``a`` and ``b`` (uniform weights), kernel domain."""
    cost = (a.pow(2).sum(dim=1, keepdim=True) + b.pow(2).sum(dim=1)[None, :] - 2 * a @ b.T).clamp_min(0)
    kernel = torch.exp(-cost / epsilon)
    weight_a = torch.full((len(a),), 1.0 / len(a), device=a.device, dtype=a.dtype)
    weight_b = torch.full((len(b),), 1.0 / len(b), device=b.device, dtype=b.dtype)
    u, v = torch.ones_like(weight_a), torch.ones_like(weight_b)
    for _ in range(iterations):
        u = weight_a / (kernel @ v + SINKHORN_GUARD)
        v = weight_b / (kernel.T @ u + SINKHORN_GUARD)
    plan = u[:, None] * kernel * v[None, :]
    return (plan * cost).sum()


def pathway_ot_loss(predicted: torch.Tensor, observed: torch.Tensor, pathways: torch.Tensor,
                    epsilon: float = 0.1, iterations: int = 50) -> torch.Tensor:
    return sinkhorn_cost(predicted @ pathways, observed @ pathways, epsilon, iterations) / pathways.shape[1]
