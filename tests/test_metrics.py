"""Metric values against straightforward independent implementations (loops, scipy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from bench.core.errors import BenchError
from bench.core.isolated_import import locked_import
from bench.evaluation import metric_catalog, metrics


def random_input(n=7, genes=60, seed=0, groups=None):
    rng = np.random.default_rng(seed)
    observed = rng.normal(1, 1, (n, genes))
    control = np.tile(rng.normal(1, 1, genes), (n, 1))
    predicted = observed + rng.normal(0, 0.7, (n, genes))
    return metrics.EvaluationInput(
        predicted=predicted,
        observed=observed,
        control=control,
        perturbation_mean=np.tile(rng.normal(1, 1, genes), (n, 1)),
        de20=np.stack([rng.choice(genes, min(20, genes), replace=False) for _ in range(n)]),
        top_expressed=np.tile(np.arange(0, genes, 2), (n, 1)),
        label_gene=np.array([rng.integers(genes) if i % 2 else -1 for i in range(n)]),
        group=np.zeros(n) if groups is None else np.asarray(groups),
    )


def reference(data: metrics.EvaluationInput) -> pd.DataFrame:
    """Loop-by-loop implementation of the definitions in DESIGN.md."""
    n = len(data.predicted)
    out = []
    for i in range(n):
        x_hat, x, c, m = data.predicted[i], data.observed[i], data.control[i], data.perturbation_mean[i]
        de, top = data.de20[i], data.top_expressed[i]
        same = [j for j in range(n) if data.group[j] == data.group[i]]
        dist = {j: np.linalg.norm(x_hat - data.observed[j]) for j in same}
        keep = [g for g in range(len(x)) if g != data.label_gene[i]]
        l1 = {j: np.abs(x_hat[keep] - data.observed[j][keep]).sum() for j in same}
        out.append(
            {
                "mse": np.mean((x_hat - x) ** 2),
                "mse_de20": np.mean((x_hat[de] - x[de]) ** 2),
                "pearson": pearsonr(x_hat, x)[0],
                "pearson_delta": pearsonr(x_hat - c, x - c)[0],
                "pearson_delta_de20": pearsonr(x_hat[de] - c[de], x[de] - c[de])[0],
                "direction_acc_de20": np.mean(np.sign(x_hat[de] - c[de]) == np.sign(x[de] - c[de])),
                "l2_top1000": np.linalg.norm(x_hat[top] - x[top]),
                "pearson_delta_pert": pearsonr(x_hat - m, x - m)[0],
                "centroid_accuracy": float(all(dist[i] < dist[j] for j in same if j != i)) if len(same) > 1 else np.nan,
                "discrimination_score_l1": 1 - sum(l1[j] < l1[i] for j in same) / len(same) if len(same) > 1 else np.nan,
            }
        )
    return pd.DataFrame(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_metric_matches_the_reference(seed):
    data = random_input(seed=seed, groups=[0, 0, 0, 1, 1, 1, 2])
    ours = metrics.evaluate(data)
    expected = reference(data)
    assert list(ours.columns) == [m for m in metric_catalog.METRICS if m not in metric_catalog.NOT_EVALUATED]
    pd.testing.assert_frame_equal(ours, expected[list(ours.columns)], atol=1e-9, check_dtype=False)


def test_perfect_prediction_scores_best():
    data = random_input()
    data.predicted = data.observed.copy()
    table = metrics.evaluate(data)
    assert np.allclose(table["mse"], 0) and np.allclose(table["pearson_delta"], 1)
    assert (table["centroid_accuracy"] == 1).all() and (table["discrimination_score_l1"] == 1).all()


def test_constant_change_gives_zero_correlation_like_gears():
    data = random_input()
    data.predicted = data.control.copy()
    assert (metrics.evaluate(data)["pearson_delta"] == 0).all()


def test_the_discrimination_score_leaves_out_the_gene_named_by_the_condition_only():
    """A prediction wrong only on its own single target is still perfectly discriminated; a double's
    genes stay in (its label names no gene, as in cell-eval), so an error there counts."""
    data = random_input(n=3, genes=3)
    data.observed = 5.0 * np.eye(3)
    data.predicted = np.array([[0.0, 1, 0], [0, 5, 0], [0, 1, 0]])
    data.label_gene = np.array([0, 1, -1])
    # L1 distances from row 0 over genes 1-2: 1 to its own, 4 and 6 to the others; over all genes its own
    # would be 6 and row 1's 4. Row 2 over all genes: 6 to its own, 6 and 4 to the others.
    assert metrics.evaluate(data)["discrimination_score_l1"].tolist() == pytest.approx([1.0, 1.0, 1 - 1 / 3])


def test_aggregate_means_per_subgroup_and_all():
    table = pd.DataFrame({"subgroup": ["a", "a", "b"], **{m: [1.0, 3.0, 5.0] for m in metric_catalog.METRICS}})
    table.loc[2, "discrimination_score_l1"] = np.nan
    result = metrics.aggregate(table)
    assert result["a/mse"] == 2.0 and result["b/mse"] == 5.0 and result["all/mse"] == 3.0
    assert "b/discrimination_score_l1" not in result and result["all/discrimination_score_l1"] == 2.0


def test_top_expressed_picks_the_highest_control_genes():
    assert metrics.top_expressed(np.array([0.1, 5.0, 2.0, 3.0]), k=2).tolist() == [1, 3]


def test_unknown_metric_name_suggests():
    with pytest.raises(BenchError, match="did you mean 'pearson_delta'"):
        metric_catalog.check_names(["pearson_dleta"])


def test_energy_distance_matches_dcor():
    dcor = locked_import("dcor")  # compiles numba code into a cache other test processes share

    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, (40, 5)), rng.normal(0.5, 1.2, (25, 5))
    assert metrics.energy_distance(a, b) == pytest.approx(float(dcor.energy_distance(a, b)), abs=1e-12)
    assert metrics.energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)


def mean_baseline_input(dtype, genes=500, n_train=13, n_test=8, seed=0) -> metrics.EvaluationInput:
    """Test perturbations predicted by the ``mean`` baseline: control plus the mean change of the training
    perturbations, computed in ``dtype``. Like the harness, centroids are float64 means of float32 cells
    and m is their float64 mean; so x̂ − m is rounding noise, and x − m a real change. As in Norman's
    data most genes are unexpressed, which concentrates the noise on a few genes."""
    rng = np.random.default_rng(seed)
    expressed = rng.random(genes) < 0.4
    level = rng.gamma(1.0, 3.0, genes)

    def centroid(shift: float, n_cells: int) -> np.ndarray:
        counts = rng.poisson(level * rng.lognormal(0, shift, genes), (n_cells, genes))
        return np.where(expressed, np.log1p(counts), 0).astype(np.float32).mean(axis=0, dtype=np.float64)

    control = centroid(0.0, 200)
    train = np.stack([centroid(0.3, 50) for _ in range(n_train)])
    observed = np.stack([centroid(0.3, 50) for _ in range(n_test)])
    predicted = control.astype(dtype) + (train.astype(dtype) - control.astype(dtype)).mean(axis=0)

    def rows(vector: np.ndarray) -> np.ndarray:
        return np.tile(vector.astype(np.float64), (n_test, 1))

    return metrics.EvaluationInput(
        predicted=rows(predicted),
        observed=observed,
        control=rows(control),
        perturbation_mean=rows(train.mean(axis=0)),
        de20=np.tile(np.arange(20), (n_test, 1)),
        top_expressed=np.tile(np.arange(genes), (n_test, 1)),
        label_gene=np.arange(n_test),
        group=np.zeros(n_test),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_mean_baseline_has_no_correlation_with_the_change_from_m(dtype):
    data = mean_baseline_input(dtype)
    noise = data.predicted - data.perturbation_mean
    assert 0 < np.linalg.norm(noise[0]) < 1e-6 * np.linalg.norm(data.perturbation_mean[0])
    naive = [pearsonr(noise[i], data.observed[i] - data.perturbation_mean[i])[0] for i in range(len(noise))]
    assert max(np.abs(naive)) > 0.05, "the rounding noise must look correlated for this test to show anything"
    assert metrics.evaluate(data)["pearson_delta_pert"].tolist() == [0.0] * len(noise)


def test_a_small_real_change_from_m_is_still_correlated():
    """A prediction 1e-3 away from m on values of size ~1 is a real (if timid) change, not noise."""
    data = random_input(genes=500)
    rng = np.random.default_rng(3)
    m = rng.uniform(0.5, 1.5, (len(data.observed), 500))
    data.perturbation_mean = m
    data.predicted = m + 1e-3 * (data.observed - m + rng.normal(0, 1, m.shape))
    expected = [pearsonr(data.predicted[i] - m[i], data.observed[i] - m[i])[0] for i in range(len(m))]
    assert min(expected) > 0.5
    assert metrics.evaluate(data)["pearson_delta_pert"].to_numpy() == pytest.approx(expected, abs=1e-9)
