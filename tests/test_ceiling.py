"""The data ceiling: halves of each test condition's cells scored against each other, tracked per split
seed, shown on every leaderboard as mean ± sd over seeds and halvings and never marked best."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import bench, real_data_file
from scipy.stats import pearsonr
from test_leaderboard import DATASET, log, result_of, scores

from bench.core.conditions import CONTROL
from bench.evaluation import ceiling
from bench.evaluation.split_data import SplitData
from bench.evaluation.splits import Split
from bench.reporting import leaderboard as lb
from bench.reporting import markdown as render
from bench.workflows import leaderboard_inputs, tracking

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


def de20(conditions) -> dict:
    return {"K562": {c: GENES[:20] for c in conditions}}


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
    table = ceiling.split_half(data, de20(effects), seed=1, halvings=3)
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
    table = ceiling.split_half(data, de20(["A"]), seed=3, halvings=4)
    np.testing.assert_allclose(table["pearson_delta"], pearsonr(pair[0] - control, pair[1] - control)[0])
    np.testing.assert_allclose(table["mse"], np.mean((pair[0] - pair[1]) ** 2))


def log_ceiling(seed: int, halving_values: list[float]) -> None:
    """A ceiling run whose halvings scored ``halving_values`` on every perturbation."""
    result = result_of(ceiling.MODEL, seed, scores(seed, 0.5), params={"halvings": len(halving_values)},
                       card_hash=ceiling.VERSION)
    result.preset = ceiling.PRESET
    for halving, value in enumerate(halving_values):
        result.metrics.update({f"halving/{halving}/{s}/pearson_delta_de20": value for s in ("all", "combo", "single")})
    tracking.log_run(result)


def test_the_ceiling_row_spans_seeds_and_halvings_and_is_never_best(tracking_store):
    for seed in (1, 2):
        log("additive", seed, scores(seed, 0.1))
    log_ceiling(1, [0.9, 0.8, 0.7])
    log_ceiling(2, [0.95, 0.85, 0.75])
    (board,) = leaderboard_inputs.boards(DATASET)
    assert board.rows[0].label == ceiling.LABEL and board.subgroups == ["all", "combo", "single"]
    reference = lb.default_reference(board, "pearson_delta_de20")
    assert reference.model == "additive"
    table = lb.table_cells(board, ["pearson_delta_de20"], reference, leaderboard_inputs.scores())
    line = table.set_index(["label", "subgroup"]).loc[(ceiling.LABEL, "all")]
    values = [0.9, 0.8, 0.7, 0.95, 0.85, 0.75]
    assert line["mean"] == pytest.approx(np.mean(values)) and line["sd"] == pytest.approx(np.std(values, ddof=1))
    assert line["n_seeds"] == 6 and not line["best"]
    assert line["diff"] == pytest.approx(0.4)  # paired on the per-perturbation means, 0.5 above 0.1
    assert table[table["best"]]["label"].unique().tolist() == ["additive"]
    text = render.markdown([(board, table, {})], "bench leaderboard")
    assert f"- `{ceiling.LABEL}`: the data ceiling" in text
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
    assert ceilings[[f"metrics.halving/{h}/all/mse" for h in range(ceiling.HALVINGS)]].notna().all().all()
