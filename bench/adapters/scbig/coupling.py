"""The minibatch coupling of OT flow matching, as the official release computes it with ott-jax 0.5.

Official: ``cellflow/utils.py:14-66`` (``match_linear``, called by ``cellflow/solvers/_otfm.py:323-326``):
``PointCloud(src, tgt, SqEuclidean, epsilon=1.0, scale_cost='mean')`` and ``Sinkhorn(threshold=1e-3)``
with ott's defaults (log-sum-exp updates, at most 2000 iterations, the convergence test every 10), then
``sample_joint`` draws as many flat indices of the plan as there are source rows, with replacement.

ott's Sinkhorn, reproduced here: potentials ``f = g = 0``; each iteration updates ``g`` then ``f``
(``g_j = eps log b_j - eps LSE_i((f_i - C_ij) / eps)``, ``f_i = eps log a_i - eps LSE_j((g_j - C_ij) / eps)``);
after every 10th iteration (and the last) the error is the L1 distance of the plan's column sums to
``b`` (the rows are exact after the ``f`` update) and the loop stops when it is ``< threshold`` (or not
finite); the plan is ``exp((f_i + g_j - C_ij) / eps)``.
"""

from __future__ import annotations

import math

import torch


def squared_distances(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """ott's ``SqEuclidean`` point-cloud cost ``|x|^2 + |y|^2 - 2 <x, y>`` (n, m)."""
    return (x0 * x0).sum(1)[:, None] + (x1 * x1).sum(1)[None, :] - 2 * x0 @ x1.T


@torch.no_grad()
def sinkhorn_plan(x0: torch.Tensor, x1: torch.Tensor, epsilon: float = 1.0, threshold: float = 1e-3,
                  max_iterations: int = 2000, check_every: int = 10) -> torch.Tensor:
    """The entropic OT plan (n, m) between ``x0`` (n, d) and ``x1`` (m, d) with uniform marginals, on
    the cost divided by its mean (``scale_cost='mean'``) and the absolute ``epsilon``. Computed in the
    inputs' dtype on their device, without gradient."""
    x0, x1 = x0.detach(), x1.detach()
    cost = squared_distances(x0, x1)
    cost = cost / cost.mean()
    n, m = cost.shape
    log_a = torch.full((n,), -math.log(n), dtype=cost.dtype, device=cost.device)
    log_b = torch.full((m,), -math.log(m), dtype=cost.dtype, device=cost.device)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for iteration in range(1, max_iterations + 1):
        g = epsilon * log_b - epsilon * torch.logsumexp((f[:, None] - cost) / epsilon, dim=0)
        f = epsilon * log_a - epsilon * torch.logsumexp((g[None, :] - cost) / epsilon, dim=1)
        if iteration % check_every == 0 or iteration == max_iterations:
            columns = torch.exp((f[:, None] + g[None, :] - cost) / epsilon).sum(0)
            error = float((columns - log_b.exp()).abs().sum())
            if not error >= threshold:  # converged, or not finite (ott stops on divergence too)
                break
    return torch.exp((f[:, None] + g[None, :] - cost) / epsilon)


def sample_pairs(plan: torch.Tensor, n: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` (row, column) pairs drawn with replacement with probabilities ``plan`` (normalised), as ott's
    ``sample_joint`` (flat index ``i`` -> ``(i // m, i % m)``). ``torch.multinomial`` allows at most 2^24
    plan entries (a 4096 x 4096 batch)."""
    flat = torch.multinomial(plan.flatten(), n, replacement=True, generator=generator)
    m = plan.shape[1]
    return flat // m, flat % m


def couple(x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator | None = None, **sinkhorn
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The official matching step (OTFM:323-326): the plan of ``x0`` and ``x1``, ``len(x0)`` pairs drawn
    from it, and the paired rows ``(x0[rows], x1[cols])``."""
    rows, cols = sample_pairs(sinkhorn_plan(x0, x1, **sinkhorn), len(x0), generator)
    return x0[rows], x1[cols]
