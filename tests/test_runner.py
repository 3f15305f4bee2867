"""The runner: counterfactual queries only, failures isolated per run, predictions checked."""

from __future__ import annotations

import io
import re
import textwrap

import numpy as np
import pytest
from conftest import adapter_catalog
from rich.console import Console

from bench.core import registry
from bench.core.errors import BenchError
from bench.core.progress import Display
from bench.data.datasets import Dataset
from bench.workflows import runner
from bench.workflows.execution import execute

BROKEN = textwrap.dedent(
    '''
    import numpy as np
    import pandas as pd
    from bench.core.api import Prediction

    class Crashing:
        def fit(self, train):
            raise RuntimeError("out of cheese")
        def predict(self, query):
            raise AssertionError("unreachable")

    class NaNs:
        def fit(self, train):
            pass
        def predict(self, query):
            return Prediction(pd.DataFrame(np.nan, index=query.conditions, columns=query.genes))

    class MissingOne:
        def fit(self, train):
            pass
        def predict(self, query):
            return Prediction(pd.DataFrame(0.0, index=query.conditions[1:], columns=query.genes))

    class ControlCells:
        """Predicts each condition's cells as the query's control cells, shifted by ``shift`` times
        the additive effect: shift 0 is no change, shift 1 the additive expectation."""
        shift = 0.0
        def fit(self, train):
            from bench.adapters.baselines import AdditiveModel
            self.additive = AdditiveModel()
            self.additive.fit(train)
        def predict(self, query):
            import anndata as ad
            means = self.additive.predict(query).means
            base = np.asarray(query.control.X.toarray() if hasattr(query.control.X, "toarray") else query.control.X)
            change = means.to_numpy() - base.mean(axis=0)
            X = np.concatenate([base + self.shift * change[i] for i in range(len(means))])
            obs = pd.DataFrame({"condition": np.repeat(query.conditions, len(base))})
            obs.index = obs.index.astype(str)
            cells = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=query.genes))
            return Prediction(base.mean(axis=0) + self.shift * (means - base.mean(axis=0)), cells)

    class ShiftedCells(ControlCells):
        shift = 1.0

    class Hungry(ControlCells):
        """Holds 600 MB while it fits."""
        def fit(self, train):
            held = np.ones(600 * 2**20 // 8)
            super().fit(train)
            held.sum()

    class Diagnosing(ControlCells):
        """Records a value about itself while it fits."""
        def fit(self, train):
            super().fit(train)
            train.diagnostics["latent_pearson_delta"] = 0.25

    class Peeking:
        """Records what it was shown, to prove test cells never reach a model."""
        seen = {}
        def fit(self, train):
            Peeking.seen["train"] = set(train.cells.obs_names) | set(train.val.obs_names)
            Peeking.seen["uns"] = set(train.cells.uns) | set(train.val.uns)
        def predict(self, query):
            Peeking.seen.setdefault("query", set()).update(query.control.obs_names)
            Peeking.seen.setdefault("conditions", set()).update(query.conditions)
            return Prediction(pd.DataFrame(0.0, index=query.conditions, columns=query.genes))
    '''
)


@pytest.fixture
def test_cards(tmp_path, monkeypatch):
    names = ("Crashing", "NaNs", "MissingOne", "Peeking", "ControlCells", "ShiftedCells", "Hungry", "Diagnosing")
    return adapter_catalog(tmp_path, monkeypatch, "broken_adapters", BROKEN, {name.lower(): name for name in names})


@pytest.fixture(scope="module")
def prepared(small_synthetic):
    dataset = Dataset("synthetic_small", small_synthetic, "a" * 64)
    return runner.PreparedDataset.of(dataset)


@pytest.mark.parametrize(
    "name, message",
    [("crashing", "RuntimeError: out of cheese"), ("nans", "NaN or infinite"), ("missingone", "did not predict 1")],
)
def test_broken_models_fail_their_own_run(test_cards, prepared, name, message):
    result = runner.run(runner.RunSpec(registry.find_card(name), {}, prepared.name, "simulation", 1), prepared)
    assert result.status == "FAILED" and message in result.error
    assert "\n" not in result.error and result.traceback


def test_models_never_see_test_cells(test_cards, prepared):
    from broken_adapters import Peeking

    result = runner.run(runner.RunSpec(registry.find_card("peeking"), {}, prepared.name, "simulation", 1), prepared)
    assert result.ok
    adata = prepared.adata
    test_cells = set(adata.obs_names[adata.obs["condition"].isin(result.per_perturbation["condition"])])
    assert test_cells and not test_cells & Peeking.seen["train"]
    assert set(adata.obs.loc[list(Peeking.seen["query"]), "condition"]) == {"ctrl"}
    assert not Peeking.seen["query"] & Peeking.seen["train"]
    assert "simulation" in adata.uns and not Peeking.seen["uns"]  # the simulator's ground truth stays hidden


def test_successful_run_scores_every_test_condition(prepared):
    card = registry.find_card("additive")
    result = runner.run(runner.RunSpec(card, registry.resolve_params(card), prepared.name, "simulation", 2), prepared)
    assert result.ok and len(result.split_hash) == 64
    table = result.per_perturbation
    assert set(table["subgroup"]) <= {"unseen_single", "combo_seen0", "combo_seen1", "combo_seen2"}
    for subgroup, rows in table.groupby("subgroup"):
        assert result.metrics[f"{subgroup}/mse"] == pytest.approx(rows["mse"].mean())
    assert any(key.startswith("val/") for key in result.metrics)
    assert list(result.predictions.columns) == list(prepared.adata.var_names)


def test_additive_beats_control_on_synthetic_doubles(prepared):
    """A real learning check: on planted additive doubles the additive baseline wins clearly."""
    scores = {}
    for name in ("control", "additive"):
        card = registry.find_card(name)
        result = runner.run(runner.RunSpec(card, {}, prepared.name, "additive", 1), prepared)
        scores[name] = result.metrics["all/mse_de20"]
    assert scores["additive"] < 0.5 * scores["control"]


def test_bad_parameters_are_user_errors_not_failed_runs(prepared):
    with pytest.raises(BenchError, match="no parameter"):
        runner.run(runner.RunSpec(registry.find_card("linear"), {"nope": 1}, prepared.name, "simulation", 1), prepared)


def test_runs_are_deterministic(prepared):
    card = registry.find_card("linear")
    first = runner.run(runner.RunSpec(card, registry.resolve_params(card), prepared.name, "simulation", 3), prepared)
    second = runner.run(runner.RunSpec(card, registry.resolve_params(card), prepared.name, "simulation", 3), prepared)
    assert first.metrics == second.metrics
    assert np.array_equal(first.predictions.to_numpy(), second.predictions.to_numpy())


def test_energy_distance_scores_models_that_return_cells(test_cards, prepared):
    """Cells moved by the planted additive effect are closer to the truth than unmoved controls."""
    still = runner.run(runner.RunSpec(registry.find_card("controlcells"), {}, prepared.name, "additive", 1), prepared)
    moved = runner.run(runner.RunSpec(registry.find_card("shiftedcells"), {}, prepared.name, "additive", 1), prepared)
    assert still.ok and moved.ok
    assert moved.metrics["all/energy_distance"] < 0.7 * still.metrics["all/energy_distance"]
    assert np.isfinite(moved.per_perturbation["energy_distance"]).all()


def test_models_without_cells_have_no_energy_distance(prepared):
    result = runner.run(runner.RunSpec(registry.find_card("additive"), {}, prepared.name, "additive", 1), prepared)
    assert "energy_distance" not in result.per_perturbation and "all/energy_distance" not in result.metrics


def test_each_run_records_its_own_peak_memory(test_cards, prepared):
    hungry = runner.run(runner.RunSpec(registry.find_card("hungry"), {}, prepared.name, "simulation", 1), prepared)
    after = runner.run(runner.RunSpec(registry.find_card("controlcells"), {}, prepared.name, "simulation", 1), prepared)
    assert hungry.ok and after.ok
    assert hungry.peak_memory_mb > after.peak_memory_mb + 500, (hungry.peak_memory_mb, after.peak_memory_mb)


def test_a_run_records_its_numeric_environment(test_cards, prepared):
    spec = runner.RunSpec(registry.find_card("controlcells"), {}, prepared.name, "simulation", 1)
    result = runner.run(spec, prepared)
    assert set(result.numeric) == {"numeric.cpu", "numeric.kernels", "numeric.blas", "numeric.threads",
                                   "numeric.variables"}
    assert "numpy" in result.numeric["numeric.kernels"] and "openblas" in result.numeric["numeric.blas"]


def test_diagnostics_a_model_records_are_run_metrics_but_not_test_subgroups(test_cards, prepared):
    from bench.evaluation.metric_catalog import is_test_metric

    result = runner.run(runner.RunSpec(registry.find_card("diagnosing"), {}, prepared.name, "simulation", 1), prepared)
    assert result.metrics["diagnostic/latent_pearson_delta"] == 0.25
    subgroups = {key.split("/")[0] for key in result.metrics if is_test_metric(key)}
    assert "diagnostic" not in subgroups and "val" not in subgroups and "all" in subgroups


def test_a_model_skips_data_it_cannot_use(small_synthetic):
    """``skip`` sees the data's properties before the model trains: the negative binomial on data without
    raw counts is a skipped run with the model's reason, not a failed one."""
    adata = small_synthetic.copy()
    del adata.layers["counts"]
    prepared = runner.PreparedDataset.of(Dataset("synthetic_small", adata, "a" * 64))
    card = registry.find_card("cpa")
    spec = runner.RunSpec(card, registry.resolve_params(card, "fast", ['likelihood="nb"']), prepared.name, "simulation", 1)
    result = runner.run(spec, prepared)
    assert result.status == "SKIPPED" and "needs a counts layer" in result.error and "fit" not in result.phase_seconds


def test_a_run_on_another_dataset_than_its_spec_names_is_refused(prepared):
    with pytest.raises(ValueError, match="the run is on dataset 'other'"):
        runner.run(runner.RunSpec(registry.find_card("mean"), {}, "other", "simulation", 1), prepared)


def test_execute_returns_results_in_order_and_shows_each_run(prepared):
    console = Console(file=io.StringIO(), width=200)
    specs = [runner.RunSpec(registry.find_card(name), {}, prepared.name, "simulation", seed)
             for name, seed in (("mean", 2), ("additive", 1))]
    heard = []
    with Display(console, len(specs), bars=False) as display:
        results = execute(specs, {prepared.name: prepared}, done=heard.append, display=display,
                          label=lambda spec: f"{spec.card.name} on seed {spec.seed}")
    assert [(r.model, r.seed) for r in results] == [("mean", 2), ("additive", 1)] and heard == results
    shown = console.file.getvalue()
    assert re.search(r"mean on seed 2: finished in \d+s \(1/2 runs done\)", shown), shown
    assert re.search(r"additive on seed 1: finished in \d+s \(2/2 runs done\)", shown), shown
