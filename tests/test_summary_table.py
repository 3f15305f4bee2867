"""`bench run`'s closing table: models ranked, each compared with the best baseline that ran, paired by
perturbation as the leaderboard compares them."""

from __future__ import annotations

import io

import pandas as pd
from rich.console import Console

from bench.cli.common import summary_table, where_to_look
from bench.core.api import RunResult
from bench.reporting.leaderboard import best_baseline


def result(model: str, seed: int, values: list[float]) -> RunResult:
    table = pd.DataFrame({"cell_type": "K562", "condition": ["A+B", "C+D"], "subgroup": "combo_seen2",
                          "pearson_delta_de20": values})
    mean = sum(values) / len(values)
    return RunResult(model=model, params={}, card_hash="", dataset="d", dataset_sha256="", split="simulation",
                     split_hash="", seed=seed, device="cpu", per_perturbation=table,
                     metrics={"all/pearson_delta_de20": mean, "combo_seen2/pearson_delta_de20": mean})


def rendered(table) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=200, force_terminal=False).print(table)
    return out.getvalue().splitlines()


def row(lines: list[str], model: str, subgroup: str) -> list[str]:
    line = next(line for line in lines if f" {model} " in line and f" {subgroup} " in line)
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_models_are_ranked_and_compared_with_the_best_baseline():
    results = [result("weak_baseline", 1, [0.1, 0.1]), result("good_baseline", 1, [0.4, 0.4]),
               result("model", 1, [0.5, 0.7])]
    lines = rendered(summary_table(results, ["pearson_delta_de20"], {"weak_baseline", "good_baseline"}))
    order = [next(m for m in ("weak_baseline", "good_baseline", "model") if f" {m} " in line or f" {m} (" in line)
             for line in lines if " all " in line]
    assert order == ["model", "good_baseline", "weak_baseline"]
    # model minus good_baseline per perturbation: 0.1 and 0.3; the bootstrap of two values spans them
    assert row(lines, "model", "all") == ["1", "model", "all", "1", "0.600", "+0.200 [+0.100, +0.300]*"]
    assert row(lines, "weak_baseline", "all")[-1] == "-0.300 [-0.300, -0.300]*"
    assert row(lines, "good_baseline (reference)", "all")[-1] == ""
    assert any("minus that of good_baseline (of the baselines run on the most seeds, the best)" in line for line in lines)


def test_without_a_baseline_the_table_says_how_to_get_a_comparison():
    lines = rendered(summary_table([result("model", 1, [0.5, 0.7])], ["pearson_delta_de20"], set()))
    assert not any("Δ" in line for line in lines)
    assert any("no baseline was run" in line for line in lines)


def test_the_closing_line_says_how_to_see_the_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/runs.db")
    line = where_to_look("norman_subset")
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/runs.db" in line
    assert "bench leaderboard --dataset norman_subset" in line


def test_the_best_baseline_is_one_rule_for_boards_and_the_summary():
    means = {"a": 0.2, "b": float("nan"), "c": 0.5, "d": 0.5}
    assert best_baseline(means, "pearson_delta_de20") == "c"  # higher is better; the first of equals
    assert best_baseline(means, "mse_de20") == "a"  # lower is better; no value is no candidate
    assert best_baseline({"b": float("nan")}, "mse_de20") is None and best_baseline({}, "mse_de20") is None
    assert best_baseline(means, "pearson_delta_de20", {"a": 5, "b": 5, "c": 1, "d": 1}) == "a"  # most seeds first


def test_subgroups_are_listed_all_first_then_by_name():
    subgroups = ["unseen_single", "combo_seen2", "combo_seen0", "combo_seen1"]
    run = result("model", 1, [0.5, 0.7])
    run.metrics = {f"{subgroup}/pearson_delta_de20": 0.5 for subgroup in ["all", *subgroups]}
    lines = rendered(summary_table([run], ["pearson_delta_de20"]))
    shown = [s for line in lines for s in ["all", *subgroups] if f" {s} " in line]
    assert shown == ["all", "combo_seen0", "combo_seen1", "combo_seen2", "unseen_single"]
