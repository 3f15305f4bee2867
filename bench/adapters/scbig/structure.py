"""scBIG's structure-aware alignment losses between decoded predicted cells and observed cells.

- Cluster correlation: ``||corr(predicted cluster means) - corr(observed cluster means)||_F / K``, the
  correlations taken across cells between the K gene clusters' mean expressions.
- Pathway OT: cells aggregated to pathway means (mean expression of each pathway's genes), then the
  entropic OT cost (log-domain Sinkhorn, ``epsilon`` 0.1, 50 iterations, squared Euclidean cost,
  uniform weights) between the predicted and the observed cloud, divided by the number of pathways.
Both are differentiable in the predicted cells.
"""

from __future__ import annotations

import numpy as np
import ot
import torch

EPS = 1e-6


def membership(groups: list[np.ndarray], n_genes: int, device: str) -> torch.Tensor:
    """(genes x groups) matrix whose column g averages group g's genes."""
    matrix = torch.zeros(n_genes, len(groups))
    for j, genes in enumerate(groups):
        matrix[genes, j] = 1.0 / len(genes)
    return matrix.to(device)


def correlation(x: torch.Tensor) -> torch.Tensor:
    centred = x - x.mean(dim=0)
    scale = centred.pow(2).sum(dim=0).add(EPS).sqrt()
    normalised = centred / scale
    return normalised.T @ normalised


def cluster_correlation_loss(predicted: torch.Tensor, observed: torch.Tensor, clusters: torch.Tensor) -> torch.Tensor:
    k = clusters.shape[1]
    return torch.linalg.matrix_norm(correlation(predicted @ clusters) - correlation(observed @ clusters)) / k


def pathway_ot_loss(predicted: torch.Tensor, observed: torch.Tensor, pathways: torch.Tensor,
                    epsilon: float = 0.1, iterations: int = 50) -> torch.Tensor:
    a, b = predicted @ pathways, observed @ pathways
    cost = torch.cdist(a, b).pow(2)
    weights_a = torch.full((len(a),), 1.0 / len(a), device=a.device)
    weights_b = torch.full((len(b),), 1.0 / len(b), device=b.device)
    value = ot.sinkhorn2(weights_a, weights_b, cost, epsilon, method="sinkhorn_log", numItermax=iterations,
                         stopThr=0.0, warn=False)
    return value / pathways.shape[1]
