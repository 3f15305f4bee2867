"""The simulated screen: canonical layout, normalisation, determinism, and its planted ground truth."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp
from scipy import stats

from bench.core.conditions import CONTROL, genes_of, perturbed_genes
from bench.core.errors import DataError
from bench.data.simulator import _negative_binomial, simulate

INTERACTION_SCREEN = dict(
    n_cells=6000, n_genes=400, n_modules=16, n_singles=5, n_doubles=8, seed=3, double_mix=(1, 0, 0),
    interaction_shares={"additive": 1, "synergy": 1, "buffering": 1, "epistasis": 1},
)


@pytest.fixture(scope="module")
def interaction_screen():
    """Few conditions with ~460 cells each, every double with both singles, two of each type."""
    return simulate(**INTERACTION_SCREEN)


def condition_means(adata: ad.AnnData) -> dict[str, np.ndarray]:
    X = adata.X.toarray()
    labels = adata.obs["condition"].to_numpy()
    return {c: X[labels == c].mean(axis=0) for c in np.unique(labels)}


def test_layout_is_canonical(small_synthetic):
    adata = small_synthetic
    assert adata.shape == (900, 120)
    assert adata.var_names.is_unique and adata.obs_names.is_unique
    assert all(re.fullmatch(r"G\d{5}", g) for g in adata.var_names)
    genes = set(adata.var_names)
    conditions = set(adata.obs["condition"].astype(str))
    singles = [c for c in conditions if c != CONTROL and "+" not in c]
    doubles = [c for c in conditions if "+" in c]
    assert CONTROL in conditions and len(singles) == 10 and len(doubles) == 12
    assert all(c in genes for c in singles)
    for double in doubles:
        a, b = double.split("+")
        assert a < b and a in genes and b in genes
    assert (adata.obs["condition"] == CONTROL).sum() == 90
    sizes = adata.obs["condition"].astype(str).value_counts().drop(CONTROL)
    assert sizes.max() - sizes.min() <= 1
    assert adata.obs["cell_type"].dtype == "category"
    assert list(adata.obs["cell_type"].cat.categories) == ["type_0"]
    truth = adata.uns["simulation"]
    assert set(truth["perturbed_genes"]) == perturbed_genes(conditions)
    assert ((truth["module_effect"] != 0).sum(axis=1) >= 1).all()
    module_sizes = np.bincount(np.asarray(truth["gene_module"]) + 1)
    assert len(module_sizes) == 7 and module_sizes[1:].min() >= 2 and module_sizes[0] == 24


def test_counts_are_integers_and_x_is_their_log_normalisation(small_synthetic):
    counts, X = small_synthetic.layers["counts"], small_synthetic.X
    assert sp.isspmatrix_csr(counts) and sp.isspmatrix_csr(X) and X.dtype == np.float32
    dense = counts.toarray()
    assert dense.min() >= 0 and np.array_equal(dense, np.round(dense)) and dense.sum() > 0
    expected = ad.AnnData(dense.astype(np.float64))
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    np.testing.assert_allclose(X.toarray(), expected.X, rtol=1e-5, atol=1e-6)


def test_counts_vary_like_single_cells(small_synthetic):
    """Library sizes of control cells vary as planted (log-sd 0.25 plus sampling noise) and mean counts
    span orders of magnitude across genes."""
    counts = small_synthetic.layers["counts"].toarray()
    totals = counts[(small_synthetic.obs["condition"] == CONTROL).to_numpy()].sum(axis=1)
    assert 0.2 < np.log(totals).std() < 0.4
    gene_means = counts.mean(axis=0)
    assert np.quantile(gene_means, 0.99) / np.quantile(gene_means, 0.01) > 100


def test_same_seed_same_data_other_seed_other_data():
    kwargs = dict(n_cells=400, n_genes=80, n_modules=4, n_singles=6, n_doubles=5)
    first, again, other = simulate(seed=11, **kwargs), simulate(seed=11, **kwargs), simulate(seed=12, **kwargs)
    assert (first.X != again.X).nnz == 0
    assert first.obs.equals(again.obs)
    assert first.uns["simulation"]["interaction"] == again.uns["simulation"]["interaction"]
    assert first.X.shape == other.X.shape and (first.X != other.X).nnz > 0


def test_genes_of_a_module_co_vary_in_control_cells():
    adata = simulate(n_cells=2000, n_genes=200, n_modules=10, n_singles=4, n_doubles=2, control_fraction=0.5, seed=5)
    module = np.asarray(adata.uns["simulation"]["gene_module"])
    control = adata.X[(adata.obs["condition"] == CONTROL).to_numpy()].toarray()
    corr = np.corrcoef(control.T)
    same = (module[:, None] == module[None, :]) & (module[:, None] >= 0) & ~np.eye(len(module), dtype=bool)
    other = (module[:, None] != module[None, :]) & (module[:, None] >= 0) & (module[None, :] >= 0)
    within, between = np.nanmean(corr[same]), np.nanmean(corr[other])
    assert within > 0.1 and within > between + 0.1


def delta(means: dict, condition: str, keep: np.ndarray) -> np.ndarray:
    return (means[condition] - means[CONTROL])[keep]


def relative_error(observed: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(observed - expected) / np.linalg.norm(observed))


def test_planted_interactions_hold_in_pseudobulk(interaction_screen):
    """Each double's observed log-fold change is best explained, among the four interaction types applied
    to its observed singles, by its planted type; additive and epistatic ones closely. Compared on the
    genes that respond (planted |lfc| > 0.2 in the double or a single), the perturbed genes left out."""
    adata = interaction_screen
    truth = adata.uns["simulation"]
    conditions, lfc = list(truth["conditions"]), np.asarray(truth["lfc"])[0]
    means = condition_means(adata)
    assert min(adata.obs["condition"].value_counts()) > 400
    assert sorted(truth["interaction"].values()) == sorted(["additive", "synergy", "buffering", "epistasis"] * 2)
    for double, kind in truth["interaction"].items():
        a, b = genes_of(double)
        responsive = np.abs(lfc[[conditions.index(c) for c in (double, a, b)]]).max(axis=0) > 0.2
        keep = responsive & ~adata.var_names.isin([a, b])
        observed, single_a, single_b = (delta(means, c, keep) for c in (double, a, b))
        total = single_a + single_b
        errors = {
            "additive": relative_error(observed, total),
            "synergy": relative_error(observed, 1.6 * total),
            "buffering": relative_error(observed, 0.5 * total),
            "epistasis": min(relative_error(observed, single_a), relative_error(observed, single_b)),
        }
        assert min(errors, key=errors.get) == kind, (double, errors)
        if kind == "additive":
            assert errors["additive"] < 0.35 and 0.85 < observed @ total / (total @ total) < 1.15
        if kind == "epistasis":
            dominant = delta(means, truth["dominant"][double], keep)
            assert relative_error(observed, dominant) == errors["epistasis"] < 0.35


def test_true_log_fold_changes_match_observed_ones(interaction_screen):
    """On well-expressed genes (where log1p is close to log) the planted lfc tracks the observed one."""
    adata = interaction_screen
    truth = adata.uns["simulation"]
    means = condition_means(adata)
    conditions = list(truth["conditions"])
    assert sorted(conditions) == sorted(set(adata.obs["condition"].astype(str)) - {CONTROL})
    for condition in conditions:
        keep = ~adata.var_names.isin(genes_of(condition)) & (means[CONTROL] > 1)
        true_lfc = np.asarray(truth["lfc"])[0, conditions.index(condition)][keep]
        assert stats.pearsonr(delta(means, condition, keep), true_lfc)[0] > 0.85
    target = adata.var_names.get_loc(conditions[0])
    assert means[conditions[0]][target] > means[CONTROL][target] + 1


def test_default_screen_has_doubles_with_two_one_and_no_singles():
    adata = simulate()
    conditions = set(adata.obs["condition"].astype(str))
    singles = {c for c in conditions if c != CONTROL and "+" not in c}
    kinds = {sum(g in singles for g in genes_of(c)) for c in conditions if "+" in c}
    assert kinds == {0, 1, 2}
    assert len(singles) == 40 and len(conditions) == 101


def test_cell_types_are_balanced_and_differ():
    adata = simulate(n_cells=1500, n_genes=150, n_modules=5, n_singles=6, n_doubles=4, n_cell_types=3, seed=2)
    table = adata.obs.groupby(["condition", "cell_type"], observed=True).size().unstack()
    assert table.shape[1] == 3 and (table.max(axis=1) - table.min(axis=1)).max() <= 1
    control = adata[adata.obs["condition"] == CONTROL]
    per_type = [control.X[(control.obs["cell_type"] == t).to_numpy()].mean(axis=0).A1 for t in ("type_0", "type_1")]
    assert np.abs(per_type[0] - per_type[1]).mean() > 0.1
    assert np.asarray(adata.uns["simulation"]["lfc"]).shape == (3, 10, 150)


def test_ground_truth_round_trips_through_h5ad(small_synthetic, tmp_path):
    path = tmp_path / "synthetic.h5ad"
    small_synthetic.write_h5ad(path)
    back = ad.read_h5ad(path)
    before, after = small_synthetic.uns["simulation"], back.uns["simulation"]
    assert set(before) == set(after)
    np.testing.assert_array_equal(before["gene_module"], after["gene_module"])
    np.testing.assert_allclose(before["lfc"], after["lfc"])
    assert dict(after["interaction"]) == before["interaction"]
    assert dict(after["dominant"]) == before["dominant"]
    assert list(after["conditions"]) == list(before["conditions"])
    assert after["params"]["n_genes"] == 120 and dict(after["params"]["interaction_shares"])["additive"] == pytest.approx(0.7)
    assert (back.layers["counts"] != small_synthetic.layers["counts"]).nnz == 0


@pytest.mark.parametrize("mean, size", [(0.05, 10.0), (1.5, 2.0), (8.0, 0.8), (60.0, 5.0)])
def test_negative_binomial_sampler_matches_its_distribution(mean, size):
    draws = _negative_binomial(np.full((400, 500), mean), np.full(500, size), np.random.default_rng(0)).ravel()
    assert draws.min() >= 0
    assert draws.mean() == pytest.approx(mean, rel=0.02)
    assert draws.var() == pytest.approx(mean + mean**2 / size, rel=0.05)
    values = np.arange(int(mean * 3) + 3)
    empirical = np.bincount(draws, minlength=len(values))[: len(values)] / draws.size
    expected = stats.nbinom.pmf(values, size, size / (size + mean))
    assert np.abs(empirical - expected).max() < 0.005


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(n_genes=20, n_modules=2, n_singles=30, n_doubles=0), "more than n_genes"),
        (dict(n_singles=3, n_doubles=60), "pairs of singles"),
        (dict(control_fraction=1.5), "control_fraction"),
        (dict(n_cells=50), "too few"),
        (dict(n_modules=600), "n_modules"),
        (dict(n_cells=True), "n_cells"),
        (dict(n_doubles=-1), "n_doubles"),
        (dict(dispersion=0), "dispersion"),
        (dict(effect_sizes=1.0), "effect_size"),
        (dict(activity_sd=-0.1), "activity_sd"),
        (dict(interaction_shares={"additive": 1, "antagonism": 1}), "antagonism"),
        (dict(double_mix=(1, 0)), "double_mix"),
        (dict(synergy_factor=0.5), "synergy_factor"),
        (dict(n_singles=0, n_doubles=0), "at least one perturbation"),
    ],
)
def test_impossible_parameters_raise_one_line_data_errors(kwargs, fragment):
    with pytest.raises(DataError, match=fragment) as error:
        simulate(**kwargs)
    assert "\n" not in str(error.value)
