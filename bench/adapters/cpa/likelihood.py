"""Decoder likelihoods and how decoded cells return to the harness's log-normalised space.

- ``gaussian``: the decoder gives the mean log-normalised expression; unit-variance Gaussian, i.e. the
  mean squared error on ``X`` (PerturBench's latent additive model; Wu et al. 2024). A predicted cell
  is the decoded mean.
- ``nb``: negative binomial on the counts layer, as in scVI-based CPA (Lotfollahi et al., Mol Syst
  Biol 2023): mean ``μ = softmax(decoder) · library`` (the cell's total count), per-gene inverse
  dispersion θ. A predicted cell is a count vector drawn (Gamma–Poisson) with the starting control
  cell's library size, normalised to 1e4 per cell and log1p-transformed, exactly as ``X`` is made from
  counts; predicted means average such draws (``MEAN_SAMPLES`` per condition at least), so they
  estimate the mean of log-normalised expression, not the log of the mean.
"""

from __future__ import annotations

import math

import torch

TARGET_SUM = 1e4
MEAN_SAMPLES = 1000
EPS = 1e-8


def gaussian_loss(mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return ((mean - x) ** 2).mean()


def nb_loss(logits: torch.Tensor, log_theta: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per entry of ``counts`` under NB(μ, θ), μ from the cells' libraries."""
    mu = torch.softmax(logits, dim=-1) * counts.sum(dim=1, keepdim=True)
    theta = log_theta.exp()
    log_total = torch.log(theta + mu + EPS)
    log_likelihood = (
        torch.lgamma(counts + theta) - torch.lgamma(theta) - torch.lgamma(counts + 1)
        + theta * (log_theta - log_total) + counts * (torch.log(mu + EPS) - log_total)
    )
    return -log_likelihood.mean()


def nb_cells(logits: torch.Tensor, log_theta: torch.Tensor, library: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
    """Log-normalised cells drawn from NB(softmax(logits) · library, θ)."""
    mu = torch.softmax(logits, dim=-1) * library.unsqueeze(1)
    theta = log_theta.exp().expand_as(mu).contiguous()
    # private, but the only Gamma sampler that takes a generator; tests/test_private_apis.py pins what is used
    rate = torch._standard_gamma(theta, generator=generator) * mu / theta
    counts = torch.poisson(rate, generator=generator)
    return torch.log1p(counts / counts.sum(dim=1, keepdim=True).clamp(min=1.0) * TARGET_SUM)


def decoded_cells(output: torch.Tensor, log_theta: torch.Tensor | None, library: torch.Tensor,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cells, mean)``: predicted log-normalised cells (one per row of ``output``) and their mean."""
    if log_theta is None:
        return output, output.mean(dim=0)
    draws = max(1, math.ceil(MEAN_SAMPLES / len(output)))
    cells = nb_cells(output, log_theta, library, generator)
    total = cells.sum(dim=0)
    for _ in range(draws - 1):
        total += nb_cells(output, log_theta, library, generator).sum(dim=0)
    return cells, total / (draws * len(output))
