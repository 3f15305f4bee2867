"""The data ceiling: halves of each test condition's cells scored against each other, tracked per split
seed on DE genes of the predicting half, averaged over halvings until its standard error is small, shown on
every leaderboard as mean ± sd over seeds and never marked best."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import bench, real_data_file
from scipy.stats import pearsonr
from test_leaderboard import DATASET, log, result_of, scores

from bench.core.conditions import CONTROL
from bench.evaluation import ceiling, de, splits
from bench.evaluation.split_data import SplitData
from bench.evaluation.splits import Split
from bench.reporting import leaderboard as lb
from bench.reporting import markdown as render
from bench.workflows import ceiling_runs, leaderboard_inputs, tracking
from bench.workflows.runner import PreparedDataset

GENES = [f"g{i}" for i in range(30)]


def cells(rows: dict[str, np.ndarray]) -> ad.AnnData:
    """Cells of one cell type from ``{condition: (cells × genes) values}``."""
    obs = pd.DataFrame({"condition": [c for c, x in rows.items() for _ in x], "cell_type": "K562"})
    obs.index = [f"cell{i}" for i in range(len(obs))]
    X = np.concatenate(list(rows.values())) if rows else np.zeros((0, len(GENES)))
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=GENES))


def split_data(train: dict, test: dict) -> SplitData:
    """A dataset of ``train`` and ``test`` cells, cut by a split that trains on the first and tests the second."""
    split = Split(DATASET, "sha", "simulation", 1, train=sorted(train), val={}, test={c: "single" for c in test})
    return SplitData(split, cells({**train, **test}))


def test_halves_are_disjoint_and_of_equal_size_per_condition():
    data = cells({"A": np.zeros((5, 30)), "B": np.zeros((4, 30)), "C": np.zeros((1, 30))})
    first, second = ceiling.halves(data, np.random.default_rng(0))
    condition = data.obs["condition"].to_numpy()
    assert not set(first) & set(second)
    for name, size in (("A", 2), ("B", 2), ("C", 0)):
        assert (condition[first] == name).sum() == size == (condition[second] == name).sum()


def test_a_noise_free_measurement_is_its_own_perfect_prediction():
    rng = np.random.default_rng(1)
    control = rng.uniform(1, 2, 30)
    effects = {c: rng.normal(0, 1, 30) for c in ("A", "B", "C")}
    data = split_data({CONTROL: np.tile(control, (8, 1)), "D": np.tile(control + 1, (4, 1))},
                      {c: np.tile(control + e, (6, 1)) for c, e in effects.items()})
    table = ceiling.split_half(data, seed=1, halvings=range(3))
    assert len(table) == 9 and set(table["halving"]) == {0, 1, 2}
    np.testing.assert_allclose(table["pearson_delta"], 1.0)
    np.testing.assert_allclose(table["mse"], 0.0, atol=1e-20)
    np.testing.assert_allclose(table["discrimination_score_l1"], 1.0)


def test_two_cells_are_scored_one_against_the_other():
    """With two cells a condition's halves are single cells; with identical controls either way round
    gives the same scores, written out here from their definitions."""
    rng = np.random.default_rng(2)
    control = rng.uniform(1, 2, 30)
    pair = control + rng.normal(0, 1, (2, 30))
    data = split_data({CONTROL: np.tile(control, (4, 1)), "D": np.tile(control + 1, (2, 1))}, {"A": pair})
    table = ceiling.split_half(data, seed=3, halvings=range(4))
    np.testing.assert_allclose(table["pearson_delta"], pearsonr(pair[0] - control, pair[1] - control)[0])
    np.testing.assert_allclose(table["mse"], np.mean((pair[0] - pair[1]) ** 2))


def log_ceiling(seed: int, value: float, halvings: int = 40, se: float = 0.004) -> None:
    """A ceiling run that scored ``value`` on every subgroup in pearson_delta_de20 only, a mean over
    ``halvings`` of standard error ``se``."""
    result = result_of(ceiling.MODEL, seed, scores(seed, 0.5), params={"target_se": 0.005}, card_hash=ceiling.VERSION)
    result.preset = ceiling.PRESET
    result.metrics = {}
    result.metrics.update({f"{s}/pearson_delta_de20": value for s in ("all", "combo", "single")})
    result.metrics.update({f"halving/se/{s}/pearson_delta_de20": se for s in ("all", "combo", "single")})
    result.metrics["halving/count"] = halvings
    tracking.log_run(result)


def test_the_ceiling_row_spans_seeds_names_its_halvings_and_is_never_best(tracking_store):
    for seed in (1, 2):
        log("additive", seed, scores(seed, 0.1))
    log_ceiling(1, 0.8, halvings=20, se=0.0031)
    log_ceiling(2, 0.85, halvings=60, se=0.0049)
    (board,) = leaderboard_inputs.boards(DATASET)
    assert board.rows[0].label == ceiling.LABEL and board.subgroups == ["all", "combo", "single"]
    reference = lb.default_reference(board, "pearson_delta_de20")
    assert reference.model == "additive"
    table = lb.table_cells(board, ["pearson_delta_de20"], reference, leaderboard_inputs.scores())
    line = table.set_index(["label", "subgroup"]).loc[(ceiling.LABEL, "all")]
    values = [0.8, 0.85]
    assert line["mean"] == pytest.approx(np.mean(values)) and line["sd"] == pytest.approx(np.std(values, ddof=1))
    assert line["n_seeds"] == 2 and not line["best"]
    assert line["diff"] == pytest.approx(0.4)  # paired on the per-perturbation means, 0.5 above 0.1
    assert table[table["best"]]["label"].unique().tolist() == ["additive"]
    text = render.markdown([(board, table, {})], "bench leaderboard")
    assert f"- `{ceiling.LABEL}`: the data ceiling" in text
    assert "here 20–60 halvings per seed, standard error at most 0.0049" in text
    assert f"| {ceiling.LABEL} | 2 | {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}<br>Δ +0.400" in text


@pytest.mark.slow
def test_bench_run_tracks_one_ceiling_per_split_seed(workdir, tmp_path):
    real_data_file("perturbench_devel.h5ad")
    for _ in range(2):
        out = bench("run", "--model", "mean", "--dataset", "norman_subset", "--seeds", "1-2", **workdir)
        assert out.returncode == 0, out.stderr
    import mlflow

    mlflow.set_tracking_uri(workdir["env"]["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["bench/norman_subset"])
    ceilings = runs[runs["tags.model"] == ceiling.MODEL]
    assert sorted(ceilings["tags.seed"]) == ["1", "2"] and set(ceilings["tags.preset"]) == {ceiling.PRESET}
    assert (ceilings["metrics.all/pearson_delta_de20"] > 0.5).all()
    assert (ceilings["metrics.halving/se/all/pearson_delta_de20"] < ceiling.TARGET_SE).all()
    assert (ceilings["metrics.halving/count"] >= 20).all()


def test_a_perturbation_without_effect_has_a_ceiling_near_zero(monkeypatch):
    """A planted null: every test condition's cells are drawn like the control cells, so half A's and
    half B's effects are independent noise, and on genes picked from half A alone their Pearson
    correlation is 0 in expectation (symmetric noise). DE genes picked from all cells select genes
    where both halves' noise points the same way, which gave 0.74 here (5 halvings)."""
    rng = np.random.default_rng(5)
    n_genes = 200
    genes = [f"g{i}" for i in range(n_genes)]
    level = rng.uniform(1, 3, n_genes)
    draw = lambda n: level + rng.normal(0, 1, (n, n_genes))  # noqa: E731
    train = {CONTROL: draw(60), "D": draw(6)}
    test = {f"T{i}": draw(6) for i in range(16)}
    obs = pd.DataFrame({"condition": [c for c, x in {**train, **test}.items() for _ in x], "cell_type": "K562"})
    obs.index = [f"cell{i}" for i in range(len(obs))]
    adata = ad.AnnData(np.concatenate([*train.values(), *test.values()]).astype(np.float32), obs=obs,
                       var=pd.DataFrame(index=genes))
    split = Split(DATASET, "sha", "simulation", 1, train=sorted(train), val={}, test={c: "single" for c in test})
    monkeypatch.setattr(ceiling_runs.splits, "obtain", lambda *args: (split, None))
    monkeypatch.setattr(ceiling, "MOST_HALVINGS", 40, raising=False)  # a null's SE stays above the target
    prepared = PreparedDataset(DATASET, adata, "sha", de.de_genes(adata), None)
    run = ceiling_runs.result(prepared, "simulation", 1)
    assert abs(run.metrics["all/pearson_delta_de20"]) < 0.15  # 0.05 here; about 0.04 sd over other data seeds


@pytest.mark.slow
def test_the_ceiling_of_norman_subset_has_a_standard_error_below_its_target(norman_subset):
    """The run's headline is the mean over halvings of each halving's mean over perturbations, and its
    standard error (sd over halvings / √halvings), recomputed here from the halvings, is below 0.01."""
    prepared = PreparedDataset.of(norman_subset)
    run = ceiling_runs.result(prepared, "simulation", 1)
    halvings = int(run.metrics["halving/count"])
    split, _ = splits.obtain(prepared.adata, prepared.name, prepared.sha256, "simulation", 1)
    table = ceiling.split_half(prepared.split_data(split), 1, range(halvings), prepared.singles)
    per_halving = table.groupby("halving")["pearson_delta_de20"].mean().to_numpy()
    assert len(per_halving) == halvings >= 20
    se = per_halving.std(ddof=1) / np.sqrt(halvings)
    assert run.metrics["halving/se/all/pearson_delta_de20"] == pytest.approx(se) and se < 0.01
    assert run.metrics["all/pearson_delta_de20"] == pytest.approx(per_halving.mean())
