"""Our metrics that share a name with cell-eval's (Arc Institute, ``cell-eval`` on PyPI) give cell-eval's
values on the same predictions: ``pearson_delta``, ``mse`` and ``discrimination_score_l1``.

cell-eval's ``de_direction_match`` is not compared: it asks a Wilcoxon test on predicted cells which
genes are significant, while our ``direction_acc_de20`` reads the sign of the predicted mean change on
the observed DE20 genes, so the two are different metrics with different names.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from bench.core.conditions import CONTROL
from bench.core.isolated_import import locked_import
from bench.core.pseudobulk import pseudobulk
from bench.evaluation import scoring

GENES = [f"G{i}" for i in range(40)]
TESTS = ["G0", "G1", "G2", "G3", "G0+G1", "G2+G3", "G4+G5"]
SHARED = ["pearson_delta", "mse", "discrimination_score_l1"]


def cells(condition: str, n: int, rng: np.random.Generator, shift: np.ndarray) -> ad.AnnData:
    """Log-normalised cells (log1p of Poisson counts around a condition's rates), float64, never negative."""
    counts = rng.poisson(np.exp(shift), size=(n, len(GENES)))
    obs = pd.DataFrame({"condition": condition, "cell_type": "K562"}, index=[f"{condition}-{i}" for i in range(n)])
    return ad.AnnData(np.log1p(counts).astype(np.float64), obs=obs, var=pd.DataFrame(index=GENES))


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(7)
    base = rng.normal(1.0, 0.6, len(GENES))
    control = cells(CONTROL, 60, rng, base)
    observed, predicted = [], {}
    for condition in TESTS:
        shift = base + rng.normal(0, 0.5, len(GENES))
        for gene in condition.split("+"):
            shift[GENES.index(gene)] = -2.0  # the knocked-down target
        observed.append(cells(condition, 25, rng, shift))
        mean = np.log1p(np.exp(shift)) + rng.normal(0, 0.3, len(GENES))
        predicted[condition] = np.clip(mean, 0.0, None)  # cell-eval refuses negative log-expression
    predicted = pd.DataFrame(predicted, index=GENES).T
    predicted.loc["G2"] = observed[TESTS.index("G3")].X.mean(axis=0)  # G2 predicted as the observed G3
    predicted.loc["G1", "G1"] = 12.0  # far off on its own target only, which both leave out
    predicted.loc["G4+G5", "G4"] = 12.0  # a double's genes stay in
    return control, ad.concat(observed), predicted


def ours(control: ad.AnnData, observed: ad.AnnData, predicted: pd.DataFrame) -> pd.DataFrame:
    means = predicted.copy()
    means.index = pd.MultiIndex.from_product([["K562"], means.index], names=["cell_type", "condition"])
    de20 = {"K562": {c: GENES[:20] for c in TESTS}}
    observed_means, control_means = ({"K562": pseudobulk(cells).xs("K562", level="cell_type")}
                                     for cells in (observed, control))
    table = scoring.score(means, observed_means, control_means, de20, {c: "test" for c in TESTS})
    return table.set_index("condition")[SHARED]


def cell_eval(control: ad.AnnData, observed: ad.AnnData, predicted: pd.DataFrame, outdir) -> pd.DataFrame:
    """cell-eval's scores: the real cells against one predicted cell per condition, control cells shared."""
    cell_eval_module = locked_import("cell_eval")  # imports numba code, compiled into a shared cache
    from cell_eval.metrics import metrics_registry

    predicted_cells = ad.AnnData(
        predicted.to_numpy(),
        obs=pd.DataFrame({"condition": predicted.index}, index=[f"pred-{c}" for c in predicted.index]),
        var=pd.DataFrame(index=GENES),
    )
    real, pred = ad.concat([control, observed]), ad.concat([control, predicted_cells])
    evaluator = cell_eval_module.MetricsEvaluator(
        adata_pred=pred, adata_real=real, control_pert=CONTROL, pert_col="condition",
        num_threads=1, outdir=str(outdir), skip_de=True,
    )
    others = [m for m in metrics_registry.list_metrics() if m not in SHARED]
    results, _ = evaluator.compute(profile="anndata", skip_metrics=others, write_csv=False)
    return results.to_pandas().set_index("perturbation")[SHARED]


@pytest.mark.slow
def test_shared_metrics_equal_cell_evals(pair, tmp_path):
    control, observed, predicted = pair
    expected = cell_eval(control, observed, predicted, tmp_path).loc[TESTS]
    got = ours(control, observed, predicted).loc[TESTS]
    assert expected.loc["G2", "discrimination_score_l1"] < 1.0, "a prediction must be mistaken for another"
    assert expected.loc["G1", "discrimination_score_l1"] == 1.0
    pd.testing.assert_frame_equal(got, expected, atol=1e-6, rtol=0, check_dtype=False, check_names=False)
