"""Leaderboards from tracked runs: which runs share a cell, the statistics in it, and the files written.

Runs are logged to a temporary MLflow store as a model run would log them (``tracking.log_run``), with
per-perturbation scores chosen by the test, so every expected value is computed here from those scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.cli.leaderboard import leaderboard
from bench.core.api import OFFLINE_PRIORS, RunResult
from bench.core.errors import BenchError
from bench.core.registry import all_cards
from bench.evaluation.metrics import aggregate
from bench.reporting import leaderboard as lb
from bench.reporting import markdown as render
from bench.workflows import leaderboard_inputs, tracking

DATASET = "lbtest"
CONDITIONS = [f"G{i}+G{i + 1}" for i in range(0, 16, 2)] + [f"S{i}" for i in range(8)]


def per_perturbation(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "cell_type": "K562",
        "condition": CONDITIONS,
        "subgroup": ["combo" if "+" in c else "single" for c in CONDITIONS],
        "pearson_delta_de20": values,
        "mse_de20": 1 - values,
    })


def result_of(model: str, seed: int, values: np.ndarray, split_hash: str | None = None, status: str = "FINISHED",
              dataset_sha: str = "d" * 64, params: dict | None = None, card_hash: str | None = None,
              baseline: bool | None = None) -> RunResult:
    """A run's result; a baseline when its card is (``baseline``: as given), as the runner records it."""
    table = per_perturbation(values)
    card = all_cards().get(model)
    result = RunResult(
        model=model, params=params or {"ridge": 0.1}, card_hash=card_hash or f"card-{model}", dataset=DATASET, dataset_sha256=dataset_sha,
        split="simulation", split_hash=split_hash or f"split-{seed}", seed=seed, device="cpu", status=status,
        error="ModelError: boom" if status == "FAILED" else None, split_json="{}",
        baseline=bool(card and card.baseline) if baseline is None else baseline,
    )
    if status == "FINISHED":
        result.per_perturbation, result.metrics = table, aggregate(table)
    return result


def log(model: str, seed: int, values: np.ndarray, **options) -> None:
    tracking.log_run(result_of(model, seed, values, **options))


def log_unfinished(model: str, seed: int, values: np.ndarray) -> None:
    """A run killed while logging: the store holds its tags and metrics, but neither its artifacts nor its
    end, so it stays RUNNING."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    result = result_of(model, seed, values)
    client = MlflowClient(tracking.tracking_uri())
    experiment = client.get_experiment_by_name(tracking.experiment_name(DATASET))
    run = client.create_run(experiment.experiment_id, tags=tracking.tags(result))
    client.log_batch(run.info.run_id, params=[Param(key, str(value)) for key, value in result.params.items()],
                     metrics=[Metric(key, float(value), 0, 0) for key, value in result.metrics.items()])


def scores(seed: int, shift: float) -> np.ndarray:
    """Per-perturbation values: a fixed pattern per seed, plus ``shift``."""
    return np.random.default_rng(seed).uniform(0.2, 0.6, len(CONDITIONS)) + shift


def test_cells_are_seed_means_with_a_paired_interval_to_the_best_baseline(tracking_store):
    for seed in (1, 2, 3):
        log("mean", seed, scores(seed, 0.0))
        log("additive", seed, scores(seed, 0.1))
        log("linear", seed, scores(seed, 0.25))
    log("linear", 4, scores(4, 0.25), status="FAILED")
    (board,) = leaderboard_inputs.boards(DATASET)
    reference = lb.default_reference(board, "pearson_delta_de20")
    assert reference.model == "linear"  # linear, additive and mean are baselines; linear scores highest
    table = lb.table_cells(board, ["pearson_delta_de20", "mse_de20"], reference, leaderboard_inputs.scores())
    line = table.set_index(["label", "metric", "subgroup"]).loc[("additive", "pearson_delta_de20", "combo")]
    expected = [scores(seed, 0.1)[:8].mean() for seed in (1, 2, 3)]
    assert line["mean"] == pytest.approx(np.mean(expected))
    assert line["sd"] == pytest.approx(np.std(expected, ddof=1))
    assert line["n_seeds"] == 3
    assert line["diff"] == pytest.approx(-0.15) and line["ci_low"] == pytest.approx(-0.15)  # constant shift
    assert line["n_perturbations"] == 8
    best = table[table["best"]].set_index(["metric", "subgroup"])["label"]
    assert best[("pearson_delta_de20", "all")] == "linear" and best[("mse_de20", "all")] == "linear"
    linear = next(row for row in board.rows if row.model == "linear")
    assert list(linear.failed) == [4] and sorted(linear.runs) == [1, 2, 3]


def test_a_row_on_fewer_seeds_is_never_the_bold_one(tracking_store):
    for seed in (1, 2, 3):
        log("mean", seed, scores(seed, 0.0))
        log("additive", seed, scores(seed, 0.1))
    log("linear", 1, scores(1, 0.3))  # far ahead, but on one seed of three
    (board,) = leaderboard_inputs.boards(DATASET)
    table = lb.table_cells(board, ["pearson_delta_de20"], lb.default_reference(board, "pearson_delta_de20"),
                           leaderboard_inputs.scores())
    assert set(table[table["best"]]["label"]) == {"additive"}


def test_each_run_s_scores_are_fetched_from_the_store_once_then_read_from_the_cache(tracking_store, monkeypatch):
    for seed in (1, 2):
        log("mean", seed, scores(seed, 0.0))
        log("additive", seed, scores(seed, 0.1))
    fetched, fetch = [], tracking.run_artifact
    monkeypatch.setattr(tracking, "run_artifact",
                        lambda run_id, name, folder: fetched.append((run_id, name)) or fetch(run_id, name, folder))

    def cells() -> pd.DataFrame:
        stored = leaderboard_inputs.scores()
        (board,) = leaderboard_inputs.boards(DATASET, stored=stored)
        return lb.table_cells(board, ["pearson_delta_de20"], None, stored)

    first = cells()
    assert sorted(fetched) == sorted((run_id, "per_perturbation.csv") for run_id in tracking.runs(DATASET)["run_id"].unique())
    fetched.clear()
    pd.testing.assert_frame_equal(cells(), first)
    assert fetched == []


def test_runs_on_splits_made_on_their_machine_are_noted(tracking_store):
    for seed in (1, 2):
        log("mean", seed, scores(seed, 0.0))
    (board,) = leaderboard_inputs.boards(DATASET)
    assert all(lb.NOT_COMMITTED in path for path in board.split_files.values())  # lbtest has no committed splits
    board.split_files[1] = "lbtest/simulation-seed1.json"  # as if seed 1 were committed
    text = render.markdown([(board, lb.table_cells(board, ["pearson_delta_de20"], None, leaderboard_inputs.scores()),
                             {})], "bench leaderboard")
    assert "- seed(s) 2: splits made on the machine that ran them, not committed with bench" in text


def test_mixing_split_files_of_one_seed_is_refused(tracking_store):
    log("mean", 1, scores(1, 0.0), split_hash="a" * 64)
    log("additive", 1, scores(1, 0.1), split_hash="b" * 64)
    with pytest.raises(BenchError, match="simulation seed 1 mix split files"):
        leaderboard_inputs.boards(DATASET)
    (board,) = leaderboard_inputs.boards(DATASET, latest=True)
    assert [row.model for row in board.rows] == ["additive"] and board.left_out == 1


def test_mixing_dataset_checksums_is_refused(tracking_store):
    log("mean", 1, scores(1, 0.0), dataset_sha="1" * 64)
    log("mean", 2, scores(2, 0.0), dataset_sha="2" * 64)
    with pytest.raises(BenchError, match="mix dataset checksums"):
        leaderboard_inputs.boards(DATASET)


def test_mixing_versions_of_a_model_card_is_refused(tracking_store):
    log("linear", 1, scores(1, 0.0), card_hash="old")
    log("linear", 2, scores(2, 0.0), card_hash="new")
    log("mean", 1, scores(1, 0.0))
    with pytest.raises(BenchError, match="linear \\[default\\] mix versions of the model card"):
        leaderboard_inputs.boards(DATASET)
    (board,) = leaderboard_inputs.boards(DATASET, latest=True)
    linear = board.row("linear")
    assert sorted(linear.runs) == [2] and board.left_out == 1


def test_a_rerun_replaces_the_older_run_of_its_seed(tracking_store):
    log("mean", 1, scores(1, 0.0))
    log("mean", 1, scores(1, 0.3))
    (board,) = leaderboard_inputs.boards(DATASET)
    assert board.superseded == 1
    assert board.rows[0].value("all", "pearson_delta_de20").mean == pytest.approx(scores(1, 0.3).mean())


def test_a_run_killed_while_logging_is_ignored_and_counted(tracking_store, capsys):
    log("mean", 1, scores(1, 0.0))
    log("mean", 2, scores(2, 0.0))
    log_unfinished("mean", 1, scores(1, 0.3))
    (board,) = leaderboard_inputs.boards(DATASET)
    mean = board.row("mean")
    assert sorted(mean.runs) == [1, 2] and board.ignored == 1 and board.superseded == 0
    expected = np.mean([scores(1, 0.0).mean(), scores(2, 0.0).mean()])
    assert mean.value("all", "pearson_delta_de20").mean == pytest.approx(expected)
    table = lb.table_cells(board, ["pearson_delta_de20"], None, leaderboard_inputs.scores())
    assert "1 run(s) ignored: unfinished (still running, or killed while logging)" in render.markdown([(board, table, {})], "bench leaderboard")
    leaderboard(dataset=DATASET, metric="pearson_delta_de20", out=tracking_store / "boards", plots=False)
    assert "; 1 incomplete run(s) ignored" in " ".join(capsys.readouterr().out.split())


def test_a_finished_run_without_per_perturbation_scores_is_ignored(tracking_store):
    log("mean", 1, scores(1, 0.0))
    result = result_of("mean", 1, scores(1, 0.3))
    result.per_perturbation = None
    tracking.log_run(result)
    (board,) = leaderboard_inputs.boards(DATASET)
    assert board.ignored == 1 and board.superseded == 0
    assert board.row("mean").value("all", "pearson_delta_de20").mean == pytest.approx(scores(1, 0.0).mean())


def test_a_sweeps_parent_and_trials_are_no_rows(tracking_store):
    """A tracked sweep's parent carries the sweep's setup (model, split, seed) but no provenance; it must
    neither take a row nor count as a run of mixed provenance."""
    log("mean", 1, scores(1, 0.0))
    setup = {"model": "linear", "dataset": DATASET, "split": "simulation", "seed": 1, "preset": "default"}
    parent = tracking.SweepParent(DATASET, "study", "sqlite:///sweeps.db", setup).run_id()
    tracking.log_run(result_of("linear", 1, scores(1, 0.5)), parent, {"sweep_trial": "0"})
    (board,) = leaderboard_inputs.boards(DATASET)
    assert [row.label for row in board.rows] == ["mean"] and board.ignored == board.left_out == 0


def test_a_board_whose_every_run_is_ignored_is_written_with_the_reason(tracking_store):
    result = result_of("mean", 1, scores(1, 0.0))
    result.per_perturbation = None  # e.g. a store whose artifact folder was lost
    tracking.log_run(result)
    out = tracking_store / "boards"
    leaderboard(dataset=DATASET, metric="pearson_delta_de20", out=out)
    text = (out / f"{DATASET}.md").read_text()
    assert "Reference: none" in text and "1 run(s) ignored: unfinished" in text


def test_runs_with_other_parameters_are_their_own_rows(tracking_store):
    for seed in (1, 2):
        log("linear", seed, scores(seed, 0.0), params={"ridge": 0.1, "go_ridge": 1.0})
        log("linear", seed, scores(seed, 0.2), params={"ridge": 0.5, "go_ridge": 1.0})
    (board,) = leaderboard_inputs.boards(DATASET)
    assert sorted(row.label for row in board.rows) == ["linear (ridge=0.1)", "linear (ridge=0.5)"]
    assert all(len(row.runs) == 2 for row in board.rows) and board.superseded == 0


def test_a_row_whose_runs_ran_offline_substitutes_of_official_priors_says_so(tracking_store):
    for path, substituted in (("", 4.0), ("genecompass.pkl", 0.0)):
        result = result_of("scbig", 1, scores(1, 0.0), params={"gene_embeddings": path})
        result.preset, result.metrics[f"diagnostic/{OFFLINE_PRIORS}"] = "paper", substituted
        tracking.log_run(result)
    log("linear", 1, scores(1, 0.1))
    (board,) = leaderboard_inputs.boards(DATASET)
    assert sorted(row.label for row in board.rows) == [
        "linear", "scbig [paper, offline priors] (gene_embeddings=)", "scbig [paper] (gene_embeddings=genecompass.pkl)"]


def test_markdown_states_provenance_marks_the_best_and_flags_real_gaps(tracking_store):
    for seed in (1, 2):
        log("mean", seed, scores(seed, 0.0))
        log("additive", seed, scores(seed, 0.2))
    (board,) = leaderboard_inputs.boards(DATASET)
    reference = lb.default_reference(board, "pearson_delta_de20")
    table = lb.table_cells(board, ["pearson_delta_de20"], reference, leaderboard_inputs.scores())
    text = render.markdown([(board, table, {"bars:pearson_delta_de20": "bars.png"})], "bench leaderboard")
    mean_all = np.mean([scores(s, 0.2).mean() for s in (1, 2)])
    assert f"**{mean_all:.3f} ±" in text  # additive is best and bold
    assert "Δ −0.200 [−0.200, −0.200]\\* (mdd 0.000)" in text  # mean vs additive: a real gap, flagged
    assert "`simulation-seed1 (generated, not committed; sha256 split-1)`" in text and "d" * 64 in text
    assert "![pearson_delta_de20 per subgroup](bars.png)" in text
    assert "the data ceiling" not in text  # no ceiling row, no legend for it
    csv = pd.read_csv(pd.io.common.StringIO(render.csv([(board, table, {})])))
    assert set(csv["label"]) == {"mean", "additive"} and (csv["dataset_sha256"] == "d" * 64).all()


def test_an_unknown_reference_names_the_choices(tracking_store):
    log("mean", 1, scores(1, 0.0))
    (board,) = leaderboard_inputs.boards(DATASET)
    with pytest.raises(BenchError, match="choose one of: mean"):
        board.row("scbig")


@pytest.mark.parametrize("where, reason", [("file", "it is a file, not a folder"), ("file/boards", "not a directory")])
def test_an_out_that_is_not_a_folder_is_a_one_line_error(tracking_store, where, reason):
    log("mean", 1, scores(1, 0.0))
    (tracking_store / "file").write_text("mine")
    with pytest.raises(BenchError, match=f"cannot write leaderboards to .*{where}: {reason}; pass --out a writable folder"):
        leaderboard(dataset=DATASET, metric="pearson_delta_de20", out=tracking_store / where, plots=False)
    assert (tracking_store / "file").read_text() == "mine"


def test_a_failure_part_way_leaves_the_old_files_as_they_were(tracking_store, monkeypatch):
    log("mean", 1, scores(1, 0.0))
    out = tracking_store / "boards"
    out.mkdir()
    old = {f"{DATASET}.md": "old table", f"{DATASET}.csv": "old,csv", f"{DATASET}_simulation_bars_mse_de20.png": "old plot"}
    for name, text in old.items():
        (out / name).write_text(text)

    def broken(board_tables):
        raise OSError("disk full")

    monkeypatch.setattr(render, "csv", broken)  # after the plots and the Markdown are drawn
    with pytest.raises(OSError, match="disk full"):
        leaderboard(dataset=DATASET, metric="pearson_delta_de20,mse_de20", out=out)
    assert {p.name: p.read_text() for p in out.iterdir()} == old


def test_a_row_is_a_baseline_when_its_runs_were_one(tracking_store):
    """The leaderboard takes "baseline" from what the runs recorded, not from the card files of today."""
    log("mean", 1, scores(1, 0.0), baseline=False)  # its card is a baseline now, but was not when it ran
    log("cpa", 1, scores(1, 0.1), baseline=True)  # the other way round
    (board,) = leaderboard_inputs.boards(DATASET)
    assert {row.model: row.baseline for row in board.rows} == {"mean": False, "cpa": True}
    assert all_cards()["mean"].baseline and not all_cards()["cpa"].baseline


def test_the_reference_is_a_baseline_with_the_most_seeds(tracking_store):
    """A 1-seed baseline that scores higher never takes the reference from a 5-seed one."""
    for seed in range(1, 6):
        log("additive", seed, scores(seed, 0.0))
    log("linear", 1, scores(1, 0.001))
    (board,) = leaderboard_inputs.boards(DATASET)
    assert lb.default_reference(board, "pearson_delta_de20").model == "additive"


def test_float32_noise_is_a_tie_and_every_comparison_states_its_power(tracking_store):
    for seed in (1, 2, 3):
        log("additive", seed, scores(seed, 0.0))
        log("mean", seed, scores(seed, 0.0) + 1e-7)
    (board,) = leaderboard_inputs.boards(DATASET)
    reference = lb.default_reference(board, "pearson_delta_de20")
    table = lb.table_cells(board, ["pearson_delta_de20"], reference, leaderboard_inputs.scores())
    text = render.markdown([(board, table, {})], "bench leaderboard")
    assert "Δ +0.000 [+0.000, +0.000] (mdd 0.000)" in text and "+0.000]\\*" not in text
    other = "additive" if reference.model == "mean" else "mean"
    line = table.set_index(["label", "subgroup"]).loc[(other, "all")]
    assert (line["diff"], line["ci_low"], line["ci_high"], line["detectable"]) == (0.0, 0.0, 0.0, 0.0)


def test_the_detectable_difference_is_2_8_standard_errors_of_the_paired_mean(tracking_store):
    rng = np.random.default_rng(7)
    gaps = rng.normal(0, 0.1, len(CONDITIONS))
    for seed in (1, 2):
        log("additive", seed, scores(1, 0.0))
        log("mean", seed, scores(1, 0.0) + gaps)
    (board,) = leaderboard_inputs.boards(DATASET)
    table = lb.table_cells(board, ["pearson_delta_de20"], board.row("additive"), leaderboard_inputs.scores())
    line = table.set_index(["label", "subgroup"]).loc[("mean", "all")]
    standard_error = gaps.std(ddof=0) / np.sqrt(len(gaps))  # the bootstrap's, for the mean of n values
    assert line["detectable"] == pytest.approx(2.8016 * standard_error, rel=0.1)


def test_the_board_says_how_many_distinct_test_sets_its_seeds_hold(tracking_store):
    """Seeds 1 and 2 test the same perturbations, seed 3 others: 2 distinct test sets of 3 seeds."""
    for seed in (1, 2):
        log("additive", seed, scores(seed, 0.0))
    other = result_of("additive", 3, scores(3, 0.0))
    other.per_perturbation = other.per_perturbation.assign(condition=[f"X{i}" for i in range(len(CONDITIONS))])
    tracking.log_run(other)
    (board,) = leaderboard_inputs.boards(DATASET)
    found = lb.replicates(board, leaderboard_inputs.scores())
    assert (found.sets, found.seeds) == (2, 3)
    assert found.distinct == {"all": 2 * len(CONDITIONS), "combo": 8 + 8, "single": 8 + 8}
    board.replicates = found
    table = lb.table_cells(board, ["pearson_delta_de20"], board.row("additive"), leaderboard_inputs.scores())
    text = render.markdown([(board, table, {})], "bench leaderboard")
    assert "Test sets: 2 distinct test sets of 3 seeds; distinct test perturbations over all seeds: all 32" in text


def test_one_test_perturbation_has_no_interval_and_no_star():
    """A subgroup holding one perturbation over every seed (norman_subset's combo_seen2 on `simulation`)
    has a difference but no spread to bound it: no CI and no star, however large the gap."""
    mine = per_perturbation(scores(1, 0.0)).iloc[:1]
    theirs = mine.assign(pearson_delta_de20=mine["pearson_delta_de20"] + 0.3)
    diff = lb.paired_over_seeds([(mine, theirs), (mine, theirs)], "all", "pearson_delta_de20")
    assert diff.n == 1 and diff.mean == pytest.approx(-0.3)
    assert np.isnan(diff.low) and np.isnan(diff.high) and not diff.significant


def test_a_seed_whose_table_lacks_a_metric_is_left_out_of_that_metric_only():
    """Seed 1's tables both have gi_magnitude_error, seed 2's row table lacks it (a model without cells, say):
    the metric pairs seed 1 only, and pearson_delta_de20 pairs both seeds, averaged per perturbation."""
    one = per_perturbation(scores(1, 0.0)).assign(gi_magnitude_error=0.5)
    ref_one = per_perturbation(scores(1, 0.1)).assign(gi_magnitude_error=0.2)
    two, ref_two = per_perturbation(scores(2, 0.0)), per_perturbation(scores(2, 0.1)).assign(gi_magnitude_error=9.0)
    tables = [(one, ref_one), (two, ref_two)]
    gi = lb.paired_over_seeds(tables, "all", "gi_magnitude_error")
    assert gi.n == len(CONDITIONS) and gi.mean == pytest.approx(0.3)
    both = lb.paired_over_seeds(tables, "combo", "pearson_delta_de20")
    assert both.n == 8 and both.mean == pytest.approx(-0.1)
