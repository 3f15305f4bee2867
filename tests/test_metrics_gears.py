"""The pinned metrics and DE genes agree with GEARS' own evaluation code on the same predictions."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from bench.core.conditions import CONTROL
from bench.core.isolated_import import locked_import
from bench.evaluation import metrics
from bench.evaluation.de import de_genes


def gears_style(adata: ad.AnnData) -> ad.AnnData:
    """The canonical dataset in GEARS' layout: ``A+ctrl`` singles, ``gene_name`` column."""
    out = adata.copy()
    out.obs["condition"] = [c if c == CONTROL or "+" in c else f"{c}+ctrl" for c in adata.obs["condition"]]
    out.obs["cell_type"] = adata.obs["cell_type"].astype(str)
    out.var["gene_name"] = list(out.var_names)
    out.X = sp.csr_matrix(out.X)
    return out


@pytest.fixture(scope="module")
def gears_modules():
    with warnings.catch_warnings():  # importing GEARS silences warnings process-wide otherwise
        data_utils, inference = locked_import("gears.data_utils"), locked_import("gears.inference")
    return data_utils.get_DE_genes, inference.compute_metrics, inference.deeper_analysis


@pytest.fixture(scope="module")
def gears_de_adata(norman_subset, gears_modules):
    """GEARS' layout of norman_subset with GEARS' own DE ranking in ``uns``."""
    return gears_modules[0](gears_style(norman_subset.adata), skip_calc_de=False)


def test_de20_equals_gears(norman_subset, gears_de_adata):
    ours = de_genes(norman_subset.adata)["k562"]
    theirs = gears_de_adata.uns["rank_genes_groups_cov_all"]
    assert len(ours) == 33
    for condition, genes in ours.items():
        gears_condition = condition if "+" in condition else f"{condition}+ctrl"
        dose = "1+1" if "+" in gears_condition else "1"
        assert genes == theirs[f"k562_{gears_condition}_{dose}"][:20], condition


def test_metrics_equal_gears_inference(norman_subset, gears_modules, gears_de_adata):
    _, compute_metrics, deeper_analysis = gears_modules
    adata = norman_subset.adata
    rng = np.random.default_rng(0)
    conditions = sorted(set(adata.obs["condition"]) - {CONTROL})[:12]
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    control = X[(adata.obs["condition"] == CONTROL).to_numpy()].mean(axis=0)
    genes = list(adata.var_names)

    pred_cells, truth_cells, pert_cat, pred_de, truth_de = [], [], [], [], []
    rows = {"pred": [], "obs": [], "de": []}
    for condition in conditions:
        cells = X[(adata.obs["condition"] == condition).to_numpy()]
        observed = cells.mean(axis=0)
        predicted = control + 0.6 * (observed - control) + rng.normal(0, 0.05, size=len(genes))
        gears_condition = condition if "+" in condition else f"{condition}+ctrl"
        dose = "1+1" if "+" in gears_condition else "1"
        de_names = gears_de_adata.uns["rank_genes_groups_cov_all"][f"k562_{gears_condition}_{dose}"][:20]
        de_index = np.array([genes.index(g) for g in de_names])
        for cell in cells:  # GEARS scores per-cell arrays, averaged per perturbation
            pred_cells.append(predicted)
            truth_cells.append(cell)
            pred_de.append(predicted[de_index])
            truth_de.append(cell[de_index])
            pert_cat.append(gears_condition)
        rows["pred"].append(predicted)
        rows["obs"].append(observed)
        rows["de"].append(de_index)

    results = {
        "pert_cat": np.array(pert_cat),
        "pred": np.array(pred_cells),
        "truth": np.array(truth_cells),
        "pred_de": np.array(pred_de),
        "truth_de": np.array(truth_de),
    }
    _, gears_per_pert = compute_metrics(results)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gears_deeper = deeper_analysis(gears_de_adata, results)

    n = len(conditions)
    data = metrics.EvaluationInput(
        predicted=np.stack(rows["pred"]),
        observed=np.stack(rows["obs"]),
        control=np.tile(control, (n, 1)),
        perturbation_mean=np.tile(control, (n, 1)),
        de20=np.stack(rows["de"]),
        top_expressed=np.tile(metrics.top_expressed(control), (n, 1)),
        label_gene=np.full(n, -1),
        group=np.zeros(n),
    )
    ours = metrics.evaluate(data)
    for i, condition in enumerate(conditions):
        key = condition if "+" in condition else f"{condition}+ctrl"
        assert ours.loc[i, "mse"] == pytest.approx(gears_per_pert[key]["mse"], abs=1e-6)
        assert ours.loc[i, "mse_de20"] == pytest.approx(gears_per_pert[key]["mse_de"], abs=1e-6)
        assert ours.loc[i, "pearson"] == pytest.approx(gears_per_pert[key]["pearson"], abs=1e-6)
        assert ours.loc[i, "pearson_delta"] == pytest.approx(gears_deeper[key]["pearson_delta"], abs=1e-6)
        assert ours.loc[i, "pearson_delta_de20"] == pytest.approx(gears_deeper[key]["pearson_delta_de"], abs=1e-6)
        assert ours.loc[i, "direction_acc_de20"] == pytest.approx(
            gears_deeper[key]["frac_correct_direction_20"], abs=1e-6
        )
