"""scBIG's structure-aware losses against a plain NumPy transcription of their official definitions
(``scbig/losses/gene_losses.py``), written here from the formulas, not from the code under test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.adapters.scbig.structure import (
    cluster_correlation_loss,
    correlation,
    membership,
    pathway_ot_loss,
    sinkhorn_cost,
)


def numpy_correlation(z: np.ndarray) -> np.ndarray:
    centred = z - z.mean(axis=0)
    std = np.maximum(z.std(axis=0), 1e-6)
    normalised = np.clip(centred / std, -10, 10)
    return normalised.T @ normalised / len(z)


def numpy_sinkhorn(a: np.ndarray, b: np.ndarray, epsilon: float, iterations: int) -> float:
    cost = np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2), 0)
    kernel = np.exp(-cost / epsilon)
    wa, wb = np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b))
    u, v = np.ones(len(a)), np.ones(len(b))
    for _ in range(iterations):
        u = wa / (kernel @ v + 1e-10)
        v = wb / (kernel.T @ u + 1e-10)
    return float((u[:, None] * kernel * v[None, :] * cost).sum())


@pytest.fixture
def cells():
    rng = np.random.default_rng(3)
    return rng.normal(size=(40, 12)), rng.normal(size=(30, 12))


def test_correlation_standardises_by_the_population_sd_and_clips():
    predicted = np.random.default_rng(4).normal(size=(300, 6))
    predicted[0, 0] = 1e3  # an outlier: standardised it is about sqrt(300) > 10, so it is clipped
    expected = numpy_correlation(predicted)
    assert np.allclose(correlation(torch.tensor(predicted)).numpy(), expected, atol=1e-10)
    assert not np.allclose(expected, np.corrcoef(predicted.T), atol=1e-3)  # the clip changes it


def test_cluster_correlation_loss_is_the_frobenius_gap_over_k(cells):
    predicted, observed = cells
    groups = [np.arange(0, 4), np.arange(4, 9), np.arange(9, 12)]
    clusters = membership(groups, 12, "cpu").double()
    z_pred = np.stack([predicted[:, g].mean(axis=1) for g in groups], axis=1)
    z_true = np.stack([observed[:, g].mean(axis=1) for g in groups], axis=1)
    expected = np.linalg.norm(numpy_correlation(z_pred) - numpy_correlation(z_true)) / 3
    loss = cluster_correlation_loss(torch.tensor(predicted), torch.tensor(observed), clusters)
    assert float(loss) == pytest.approx(expected, rel=1e-9)
    assert float(cluster_correlation_loss(torch.tensor(observed), torch.tensor(observed), clusters)) == 0.0


@pytest.mark.parametrize("scale", [0.05, 3.0])
def test_sinkhorn_cost_matches_the_kernel_domain_transcription(cells, scale):
    """At scale 3 the squared distances over 0.1 pass float32's exp range: the kernel underflows, as in
    the official float32 run, and both implementations agree on what is left."""
    predicted, observed = (scale * c for c in cells)
    expected = numpy_sinkhorn(predicted[:, :4], observed[:, :4], 0.1, 50)
    got = sinkhorn_cost(torch.tensor(predicted[:, :4]), torch.tensor(observed[:, :4]), 0.1, 50)
    assert float(got) == pytest.approx(expected, rel=1e-8, abs=1e-12)


def test_pathway_ot_loss_averages_pathway_genes_and_divides_by_the_pathway_count(cells):
    predicted, observed = (0.1 * c for c in cells)
    pathways = [np.array([0, 1, 2]), np.array([5]), np.array([2, 7, 8, 11])]
    matrix = membership(pathways, 12, "cpu").double()
    expected = numpy_sinkhorn(np.stack([predicted[:, p].mean(axis=1) for p in pathways], axis=1),
                              np.stack([observed[:, p].mean(axis=1) for p in pathways], axis=1), 0.1, 50) / 3
    got = pathway_ot_loss(torch.tensor(predicted), torch.tensor(observed), matrix)
    assert float(got) == pytest.approx(expected, rel=1e-6)  # the membership weights are float32


def test_both_losses_pass_gradients_to_the_predicted_cells(cells):
    predicted, observed = (torch.tensor(0.1 * c, dtype=torch.float32) for c in cells)
    predicted.requires_grad_(True)
    clusters = membership([np.arange(6), np.arange(6, 12)], 12, "cpu")
    (cluster_correlation_loss(predicted, observed, clusters) + pathway_ot_loss(predicted, observed, clusters)).backward()
    assert predicted.grad is not None and predicted.grad.abs().sum() > 0
