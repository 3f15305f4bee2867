"""A run's prediction files, read back from its tracked artifacts: ``predictions.h5ad`` (predicted means,
a control row per cell type, the observed means in a layer) and ``predicted_cells.h5ad`` (cell-eval's
layout) as scanpy and cell-eval take them, and ``bench score`` scoring them again as the run scored them."""

from __future__ import annotations

import textwrap
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import adapter_catalog

from bench.core import registry
from bench.core.errors import BenchWarning
from bench.core.isolated_import import locked_import
from bench.data.datasets import load_dataset
from bench.evaluation import metric_catalog, splits
from bench.workflows import leaderboard_inputs, runner, tracking

ADAPTERS = textwrap.dedent(
    '''
    import anndata as ad
    import numpy as np
    import pandas as pd
    from bench.adapters.baselines import AdditiveModel
    from bench.core.api import Prediction

    class ShiftedControls:
        """Each condition's cells: the query's control cells moved by the additive baseline's change,
        clipped at 0 (cell-eval refuses negative log-expression); its means are those cells' means."""
        def fit(self, train):
            self.additive = AdditiveModel()
            self.additive.fit(train)
        def predict(self, query):
            base = query.control.X.toarray() if hasattr(query.control.X, "toarray") else np.asarray(query.control.X)
            change = self.additive.predict(query).means.to_numpy() - base.mean(axis=0)
            cells = np.clip(base[None] + change[:, None], 0.0, None)
            obs = pd.DataFrame({"condition": np.repeat(query.conditions, len(base))})
            obs.index = obs.index.astype(str)
            predicted = ad.AnnData(cells.reshape(-1, len(query.genes)), obs=obs, var=pd.DataFrame(index=query.genes))
            return Prediction(pd.DataFrame(cells.mean(axis=1), index=query.conditions, columns=query.genes), predicted)
    '''
)
SPLIT, SEED = "simulation", 1


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A small two-cell-type screen (written as an .h5ad, as `bench run --dataset FILE` reads it), the
    additive baseline and a cell-returning model run on it and logged to a tracking store; per model its
    RunResult and downloaded artifacts."""
    from bench.data.simulator import simulate

    folder = tmp_path_factory.mktemp("prediction-files")
    path = folder / "two_cell_types.h5ad"  # its own name: frozen splits are cached by dataset name
    simulate(n_cells=1200, n_genes=60, n_modules=4, n_singles=8, n_doubles=8, n_cell_types=2, seed=5).write_h5ad(path)
    uri = f"sqlite:///{folder / 'runs.db'}"
    additive = registry.find_card("additive")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "bench-cache"))
        patch.setenv("BENCH_CARDS_DIR", str(folder / "user-cards"))
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        adapter_catalog(folder, patch, "file_adapters", ADAPTERS, {"shiftedcontrols": "ShiftedControls"})
        dataset = load_dataset(str(path))
        prepared = runner.PreparedDataset.of(dataset)
        runs = {}
        for card in (additive, registry.find_card("shiftedcontrols")):
            result = runner.run(runner.RunSpec(card, {}, prepared.name, SPLIT, SEED), prepared)
            assert result.ok, result.error
            run_id = tracking.log_run(result)
            runs[card.name] = (result, run_id, tracking.run_artifact(run_id, "", folder / card.name))
    split = splits.Split.from_json(runs["additive"][0].split_json)
    return {"runs": runs, "path": path, "uri": uri, "adata": dataset.adata, "split": split, "card": additive}


def means_of(logged, model="additive") -> ad.AnnData:
    return ad.read_h5ad(logged["runs"][model][2] / "predictions.h5ad")


def cells_of(logged) -> ad.AnnData:
    return ad.read_h5ad(logged["runs"]["shiftedcontrols"][2] / "predicted_cells.h5ad")


def mean_of(adata: ad.AnnData, rows: np.ndarray) -> np.ndarray:
    X = adata.X[rows]
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64).mean(axis=0)


def test_the_means_file_has_a_row_per_test_condition_and_a_control_row_per_cell_type(logged):
    means, split, obs = means_of(logged), logged["split"], logged["adata"].obs
    for column in ("condition", "subgroup", "cell_type"):
        assert isinstance(means.obs[column].dtype, pd.CategoricalDtype), column
    tested = obs[obs["condition"].isin(split.test)][["cell_type", "condition"]].astype(str).drop_duplicates()
    expected = {(ct, c, split.test[c]) for ct, c in tested.itertuples(index=False)}
    expected |= {("type_0", "ctrl", "control"), ("type_1", "ctrl", "control")}
    rows = means.obs[["cell_type", "condition", "subgroup"]].astype(str)
    assert set(rows.itertuples(index=False, name=None)) == expected and len(rows) == len(expected)
    assert list(means.obs_names) == [f"{ct}/{c}" for ct, c in zip(rows["cell_type"], rows["condition"])]
    assert means.obs_names.is_unique and means.X.dtype == np.float32 and means.layers["observed"].dtype == np.float32


def test_the_files_say_which_run_made_them_and_what_they_hold(logged):
    result = logged["runs"]["additive"][0]
    info = means_of(logged).uns["bench"]
    assert {key: info[key] for key in ("model", "card_sha256", "preset", "dataset", "dataset_sha256", "split",
                                       "split_sha256", "seed", "metrics_version")} == {
        "model": "additive", "card_sha256": registry.card_hash(logged["card"]), "preset": "default", "dataset": "two_cell_types",
        "dataset_sha256": result.dataset_sha256, "split": SPLIT, "split_sha256": logged["split"].sha256, "seed": SEED,
        "metrics_version": metric_catalog.METRICS_VERSION}
    assert "predicted mean log-normalised expression" in info["X"] and "query control" in info["X"]
    assert info["observed"].startswith("layers['observed']: the observed mean")
    cells = cells_of(logged).uns["bench"]
    assert cells["model"] == "shiftedcontrols" and cells["split_sha256"] == logged["split"].sha256
    assert (cells["pert_col"], cells["control_pert"]) == ("target", "non-targeting")


def test_the_means_and_observed_layer_are_the_runs_and_the_datas(logged):
    """X is the run's prediction (control rows: the query control cells' mean); the layer is each row's
    observed mean, computed here from the dataset's cells."""
    means, adata, split = means_of(logged), logged["adata"], logged["split"]
    predictions = logged["runs"]["additive"][0].predictions
    obs = adata.obs[["cell_type", "condition"]].astype(str)
    query = adata.obs_names.isin(split.cells["query_control"])
    keys = means.obs[["cell_type", "condition"]].astype(str).to_numpy()
    for name, (cell_type, condition) in zip(means.obs_names, keys):
        row = means[name]
        mine = (obs["cell_type"] == cell_type).to_numpy()
        if condition == "ctrl":
            expected = mean_of(adata, mine & query)
            np.testing.assert_allclose(row.X[0], expected, rtol=1e-6, atol=1e-6)
        else:
            expected = mean_of(adata, mine & (obs["condition"] == condition).to_numpy())
            np.testing.assert_array_equal(row.X[0], predictions.loc[(cell_type, condition)].to_numpy(np.float32))
        np.testing.assert_allclose(row.layers["observed"][0], expected, rtol=1e-6, atol=1e-6)


def test_the_cells_file_holds_the_predicted_and_query_control_cells_in_cell_evals_layout(logged):
    cells, result = cells_of(logged), logged["runs"]["shiftedcontrols"][0]
    assert set(cells.obs.columns) == {"target", "cell_type"} and cells.obs_names.is_unique
    assert all(isinstance(cells.obs[c].dtype, pd.CategoricalDtype) for c in ("target", "cell_type"))
    assert cells.obs["target"].cat.categories[0] == "non-targeting" and cells.X.dtype == np.float32
    control = (cells.obs["target"] == "non-targeting").to_numpy()
    assert set(cells.obs_names[control]) == set(logged["split"].cells["query_control"])
    for cell_type, predicted in result.predicted_cells.items():
        mine = (cells.obs["cell_type"] == cell_type).to_numpy() & ~control
        assert list(cells.obs["target"][mine]) == list(predicted.obs["condition"])
        np.testing.assert_array_equal(cells.X[mine], np.asarray(predicted.X, dtype=np.float32))


def test_scanpy_ranks_genes_of_predicted_cells_and_refuses_single_row_groups(logged):
    """`rank_genes_groups` needs two rows per group with every method, so the means file (one row per
    condition and cell type) cannot be ranked; the cells file can, as the README shows."""
    import scanpy as sc

    means = sc.read_h5ad(logged["runs"]["additive"][2] / "predictions.h5ad")
    one_type = means[means.obs["cell_type"] == "type_0"].copy()
    for method in ("t-test", "t-test_overestim_var", "wilcoxon", "logreg"):
        with pytest.raises(ValueError, match="only contain one sample"):
            sc.tl.rank_genes_groups(one_type, "condition", reference="ctrl", method=method)
    type_0 = means[means.obs["cell_type"] == "type_0"]  # the README's change from the control row
    control = type_0[type_0.obs["condition"] == "ctrl"]
    predicted_change = type_0.to_df() - control.X[0]
    observed_change = type_0.to_df("observed") - control.layers["observed"][0]
    assert not predicted_change.loc["type_0/ctrl"].any() and not observed_change.loc["type_0/ctrl"].any()
    assert predicted_change.abs().to_numpy().max() > 0.1 and observed_change.abs().to_numpy().max() > 0.1

    cells = sc.read_h5ad(logged["runs"]["shiftedcontrols"][2] / "predicted_cells.h5ad")
    cells = cells[cells.obs["cell_type"] == "type_0"].copy()
    sc.tl.rank_genes_groups(cells, "target", reference="non-targeting", method="wilcoxon")
    conditions = set(cells.obs["target"].astype(str)) - {"non-targeting"}
    assert set(cells.uns["rank_genes_groups"]["names"].dtype.names) == conditions
    control = mean_of(cells, (cells.obs["target"] == "non-targeting").to_numpy())
    for condition in conditions:
        change = mean_of(cells, (cells.obs["target"] == condition).to_numpy()) - control
        table = sc.get.rank_genes_groups_df(cells, group=condition).set_index("names")
        assert table.loc[cells.var_names[np.argmax(np.abs(change))], "pvals_adj"] < 0.05, condition


@pytest.mark.slow
def test_cell_eval_scores_the_predicted_cells_with_its_default_columns(logged, tmp_path):
    """cell-eval's MetricsEvaluator, called with its defaults, reads the cells file of one cell type against
    observed cells in the same layout; its mse per condition is the run's."""
    cell_eval = locked_import("cell_eval")  # imports numba code, compiled into a shared cache
    split = splits.Split.from_json((logged["runs"]["shiftedcontrols"][2] / "split.json").read_text())
    part = splits.apply(split, logged["adata"])
    real = ad.concat([part.query_control, part.test])  # as the README builds the observed cells
    real = real[real.obs["cell_type"] == "type_0"].copy()
    real.obs["target"] = real.obs["condition"].astype(str).replace("ctrl", "non-targeting")
    real.write_h5ad(tmp_path / "real.h5ad")
    cells = cells_of(logged)
    cells[cells.obs["cell_type"] == "type_0"].copy().write_h5ad(tmp_path / "pred.h5ad")

    evaluator = cell_eval.MetricsEvaluator(adata_pred=str(tmp_path / "pred.h5ad"),
                                           adata_real=str(tmp_path / "real.h5ad"), outdir=str(tmp_path / "cell-eval"))
    results, _ = evaluator.compute(profile="minimal")
    theirs = results.to_pandas().set_index("perturbation")["mse"]
    ours = logged["runs"]["shiftedcontrols"][0].per_perturbation
    ours = ours[ours["cell_type"] == "type_0"].set_index("condition")["mse"]
    assert sorted(theirs.index) == sorted(ours.index) and len(ours) >= 3
    np.testing.assert_allclose(theirs.loc[ours.index], ours, rtol=1e-4)


@pytest.mark.parametrize("model, artifact", [("additive", "predictions.h5ad"),
                                             ("shiftedcontrols", "predictions.h5ad"),
                                             ("shiftedcontrols", "predicted_cells.h5ad")])
def test_bench_score_on_a_runs_own_file_gives_the_runs_metrics(logged, monkeypatch, model, artifact):
    from bench.cli import external as cli_external

    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged["uri"])
    result, _, folder = logged["runs"][model]
    name = f"again_{model}_{artifact.split('.')[0]}"
    cli_external.score(dataset=str(logged["path"]), predictions=folder / artifact, split=SPLIT, seed=SEED, name=name)
    tracked = tracking.search_runs("two_cell_types", f"tags.model = '{name}'")
    assert len(tracked) == 1
    expected = {key: value for key, value in result.metrics.items() if metric_catalog.is_test_metric(key)}
    if artifact == "predictions.h5ad":  # means alone: no energy distance
        expected = {key: value for key, value in expected.items() if not key.endswith("/energy_distance")}
    else:
        assert "all/energy_distance" in expected
    got = {key.removeprefix("metrics."): tracked[key].iloc[0] for key in tracked if key.startswith("metrics.")}
    assert set(got) == set(expected)
    np.testing.assert_allclose([got[key] for key in sorted(expected)], [expected[key] for key in sorted(expected)],
                               rtol=1e-4, atol=1e-5)


def test_the_leaderboard_scatter_reads_the_means_without_the_control_rows(logged, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged["uri"])
    result, run_id, _ = logged["runs"]["additive"]
    frame = leaderboard_inputs.predictions(run_id)
    assert list(frame.index) == list(result.predictions.index)
    np.testing.assert_array_equal(frame.to_numpy(), result.predictions.to_numpy(np.float32))


def test_a_result_with_cells_pickles_without_its_dataset(logged):
    """Worker processes hand results back pickled: the query control cells travel as their own rows, not as
    a view that would pickle the whole dataset, and the files made from the copy are the same."""
    import pickle

    from bench.workflows import prediction_files

    result = logged["runs"]["shiftedcontrols"][0]
    size = len(pickle.dumps(result))
    assert size < len(pickle.dumps(logged["adata"])) / 2
    restored = pickle.loads(pickle.dumps(result))
    for build in (prediction_files.means_file, prediction_files.cells_file):
        before, after = build(result), build(restored)
        np.testing.assert_array_equal(before.X, after.X)
        assert list(before.obs_names) == list(after.obs_names)


@pytest.fixture
def scatter_board(logged, monkeypatch, tmp_path):
    """The logged runs' board, with an empty cache; its dataset file is loaded under its run's name."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged["uri"])
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_dataset(str(logged["path"]))
    monkeypatch.setattr(leaderboard_inputs, "load_dataset", lambda *args, **kwargs: dataset)
    (board,) = leaderboard_inputs.boards(logged["runs"]["additive"][0].dataset)
    return board


def test_the_scatter_reads_the_observed_changes_from_its_cache_the_second_time(scatter_board, monkeypatch):
    board = scatter_board
    first = leaderboard_inputs.scatter_data(board, "pearson_delta_de20")

    def loaded_again(*args, **kwargs):
        raise AssertionError("the dataset was loaded again")

    monkeypatch.setattr(leaderboard_inputs, "load_dataset", loaded_again)
    second = leaderboard_inputs.scatter_data(board, "pearson_delta_de20")
    assert second.genes == first.genes and len(first.genes) > 2
    assert set(second.observed) == set(first.observed)
    for key, change in first.observed.items():
        assert second.observed[key].dtype == change.dtype
        np.testing.assert_array_equal(second.observed[key], change)
    assert set(second.control) == set(first.control) and len(first.control) == 2  # two cell types
    for cell_type, control in first.control.items():
        pd.testing.assert_series_equal(second.control[cell_type], control, check_names=False)


def test_an_unreadable_scatter_cache_is_recomputed_with_a_warning(scatter_board, tmp_path):
    board = scatter_board
    first = leaderboard_inputs.scatter_data(board, "pearson_delta_de20")
    (cached,) = (tmp_path / "cache" / "scatter").glob("*.npz")
    cached.write_bytes(cached.read_bytes()[:100])  # cut short, as by a full disk
    with pytest.warns(BenchWarning, match="scatter cache .* is unusable"):
        again = leaderboard_inputs.scatter_data(board, "pearson_delta_de20")
    assert again.genes == first.genes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        leaderboard_inputs.scatter_data(board, "pearson_delta_de20")  # rewritten whole
