"""Genetic-interaction scores of doubles: GEARS' definitions, the classes, and the simulator's planted types."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import TheilSenRegressor

from bench.core.conditions import genes_of
from bench.core.isolated_import import locked_import
from bench.evaluation import interactions


def singles_and_noise(seed: int = 0, genes: int = 100):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, genes), rng.normal(0, 1, genes), rng


@pytest.mark.parametrize("shape", [(200,), (200, 2)])
def test_distance_correlation_equals_dcors(shape):
    dcor = locked_import("dcor")  # compiles numba code into a cache other test processes share
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape)
    y = np.tanh(x.reshape(len(x), -1).sum(axis=1)) + rng.normal(0, 0.3, len(x))
    assert interactions.distance_correlation(x, y) == pytest.approx(dcor.distance_correlation(x, y), abs=1e-9)


@pytest.mark.parametrize(
    ("combine", "kind"),
    [
        (lambda a, b: a + b, "additive"),
        (lambda a, b: 1.6 * (a + b), "synergy"),
        (lambda a, b: 0.5 * (a + b), "buffering"),
        (lambda a, b: a, "epistasis"),
    ],
)
def test_exact_combinations_get_their_class(combine, kind):
    a, b, _ = singles_and_noise()
    scores = interactions.scores(a, b, combine(a, b))
    assert scores.kind == kind
    assert scores.model_fit == pytest.approx(1.0)


def test_an_additive_double_has_unit_coefficients_even_with_outlier_genes():
    a, b, rng = singles_and_noise(1)
    double = a + b + rng.normal(0, 0.05, len(a))
    double[:5] += 10.0  # five genes far off: Theil–Sen's median of pairwise solutions ignores them
    scores = interactions.scores(a, b, double)
    assert scores.c_a == pytest.approx(1.0, abs=0.05) and scores.c_b == pytest.approx(1.0, abs=0.05)
    assert scores.magnitude == pytest.approx(math.sqrt(2), abs=0.07) and scores.kind == "additive"


def test_the_scores_are_gears_own():
    """On 100 genes both enumerate every pair of genes, so the Theil–Sen fits agree exactly."""
    gears_utils = locked_import("gears.utils")
    a, b, rng = singles_and_noise(2)
    double = 1.3 * a + 0.6 * b + rng.normal(0, 0.4, len(a))
    ours = interactions.scores(a, b, double)
    theirs = gears_utils.get_coeffs(np.column_stack([a, b]), a, b, double)
    assert ours.c_a == pytest.approx(theirs["c1"], abs=1e-9) and ours.c_b == pytest.approx(theirs["c2"], abs=1e-9)
    for mine, key in (("magnitude", "mag"), ("model_fit", "corr_fit"), ("dominance", "dominance"),
                      ("equality", "eq_contr"), ("similarity", "dcor_singles")):
        assert getattr(ours, mine) == pytest.approx(theirs[key], abs=1e-9), mine


def simulated():
    from bench.data.simulator import simulate

    adata = simulate(n_cells=3000, n_genes=1000, n_modules=20, n_singles=40, n_doubles=60, seed=0)
    return adata, interactions.observed_singles(adata)


def test_observed_scores_recover_the_simulators_planted_types():
    adata, singles = simulated()
    planted = adata.uns["simulation"]["interaction"]
    scored = {c: s.kind for table in interactions.observed_doubles(adata, singles).values() for c, s in table.items()}
    confusion = pd.crosstab(pd.Series([planted[c] for c in scored], name="planted"),
                            pd.Series(list(scored.values()), name="scored"))
    assert len(scored) >= 30
    correct = sum(confusion.loc[k, k] for k in confusion.index if k in confusion.columns)
    assert correct / len(scored) >= 0.8, confusion
    for kind in confusion.index:
        assert confusion.loc[kind].idxmax() == kind, confusion  # every planted type is mostly recovered


def test_the_additive_rule_scores_additive_on_every_double():
    """Predicted from its observed singles, a double scores additive: the metric then credits the rule on
    the observed-additive doubles and faults it on the others."""
    adata, singles = simulated()
    cell_type, table = next(iter(singles.items()))
    observed = interactions.observed_doubles(adata, singles)[cell_type]
    means = pd.DataFrame(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, columns=adata.var_names)
    condition = adata.obs["condition"].astype(str).to_numpy()
    control = means[condition == "ctrl"].mean().to_numpy()
    doubles = sorted(observed)
    predicted = np.stack([control + sum(table.loc[g].to_numpy() - control for g in genes_of(d)) for d in doubles])
    actual = np.stack([means[condition == d].mean().to_numpy() for d in doubles])
    found = interactions.gi_metrics([(cell_type, d) for d in doubles], predicted, actual,
                                    np.tile(control, (len(doubles), 1)), singles)
    assert all(interactions.double_scores(d, p, table, control).kind == "additive" for d, p in zip(doubles, predicted))
    expected = [float(observed[d].kind == "additive") for d in doubles]
    assert found["gi_class_agreement"].tolist() == expected and 0 < sum(expected) < len(expected)
    errors = [abs(1.0 - observed[d].strength) for d in doubles]  # the additive rule's strength is 1
    assert found["gi_magnitude_error"].to_numpy() == pytest.approx(errors, abs=1e-5)  # float32 means here


def test_rows_that_are_not_doubles_with_observed_singles_have_no_interaction_metrics():
    singles = pd.DataFrame(np.ones((2, 3)), index=["A", "B"], columns=["g0", "g1", "g2"])
    keys = [("K562", "A"), ("K562", "A+C"), ("K562", "ctrl"), ("HepG2", "A+B")]
    found = interactions.gi_metrics(keys, np.ones((4, 3)), np.ones((4, 3)), np.zeros((4, 3)), {"K562": singles})
    assert found.isna().all().all()


@pytest.mark.parametrize("degenerate", [False, True])
def test_theil_sen_is_scikit_learns(degenerate):
    """Pairs solved at once give scikit-learn's coefficients, also where pairs are singular (repeated
    rows, rows of zeros), which scikit-learn's LAPACK call answers by least squares."""
    rng = np.random.default_rng(7)
    singles = rng.normal(0, 1, (100, 2))
    target = singles @ [0.6, 1.3] + rng.standard_t(2, 100) * 0.2
    if degenerate:
        singles[10:20] = singles[10]
        singles[30:35] = 0.0
        singles[40:45] = singles[40] * np.arange(1, 6)[:, None]
    theirs = TheilSenRegressor(fit_intercept=False, max_subpopulation=100_000, max_iter=1000, random_state=1000)
    theirs.fit(singles, target)
    np.testing.assert_allclose(interactions.theil_sen(singles, target), theirs.coef_, rtol=1e-10, atol=1e-12)
