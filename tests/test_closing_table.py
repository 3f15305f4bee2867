"""`bench run`'s closing table: models ranked, each compared with the best baseline that ran, paired by
perturbation as the leaderboard compares them, legible at 80 columns in a log file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd

from bench.cli.closing_table import closing_table
from bench.cli.common import where_to_look
from bench.core.api import RunResult
from bench.reporting.leaderboard import best_baseline


def result(model: str, seed: int, values: list[float], preset: str | None = None) -> RunResult:
    table = pd.DataFrame({"cell_type": "K562", "condition": ["A+B", "C+D"], "subgroup": "combo_seen2",
                          "pearson_delta_de20": values})
    mean = sum(values) / len(values)
    return RunResult(model=model, params={}, card_hash="", dataset="d", dataset_sha256="", split="simulation",
                     split_hash="", seed=seed, device="cpu", per_perturbation=table,
                     metrics={"all/pearson_delta_de20": mean, "combo_seen2/pearson_delta_de20": mean},
                     preset=preset)


def rendered(*args, width: int = 80) -> list[str]:
    return [line.plain for line in closing_table(*args, width=width)]


def block(lines: list[str], heading: str) -> list[str]:
    """The lines of the model whose heading line starts with ``heading``, up to the next model's."""
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1].isdigit()), len(lines))
    return lines[start:end]


def test_models_are_ranked_and_compared_with_the_best_baseline():
    results = [result("weak_baseline", 1, [0.1, 0.1]), result("good_baseline", 1, [0.4, 0.4]),
               result("model", 1, [0.5, 0.7])]
    lines = rendered(results, ["pearson_delta_de20"], {"weak_baseline", "good_baseline"})
    assert [line.split()[1] for line in lines if line[:1].isdigit()] == ["model", "good_baseline", "weak_baseline"]
    # model minus good_baseline per perturbation: 0.1 and 0.3; the bootstrap of two values spans them
    model = block(lines, "1  model · 1 seed")
    assert model[1].split() == ["all", "0.600"] and model[2].split() == ["Δ", "+0.200", "[+0.100,", "+0.300]*"]
    assert block(lines, "3  weak_baseline")[2].split() == ["Δ", "-0.300", "[-0.300,", "-0.300]*"]
    assert not any("Δ" in line for line in block(lines, "2  good_baseline (reference) · 1 seed"))
    caption = " ".join(lines[-3:])
    assert "minus that of good_baseline (of the baselines run on the most seeds, the best)" in caption


def test_without_a_baseline_the_table_says_how_to_get_a_comparison():
    lines = rendered([result("model", 1, [0.5, 0.7])], ["pearson_delta_de20"], set())
    assert not any("Δ" in line for line in lines)
    assert any("no baseline was run" in line for line in lines)


def test_a_preset_is_named_as_the_progress_lines_name_it():
    lines = rendered([result("scbig", 1, [0.5, 0.7], preset="fast"), result("additive", 1, [0.1, 0.2])],
                     ["pearson_delta_de20"], {"additive"})
    assert lines[1].split() == ["subgroup", "pearson_delta_de20"]
    assert lines[2] == "1  scbig [fast] · 1 seed"


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
    lines = rendered([run], ["pearson_delta_de20"])
    shown = [line.split()[0] for line in lines[3:8]]
    assert shown == ["all", "combo_seen0", "combo_seen1", "combo_seen2", "unseen_single"]


PRINT_TO_A_FILE = textwrap.dedent("""
    import pickle, sys
    from bench.cli.common import print_closing_table
    results, shown, baselines = pickle.load(open(sys.argv[1], "rb"))
    print_closing_table(results, shown, baselines)
""")


def test_a_log_file_gets_every_subgroup_and_every_interval_whole_within_80_columns(tmp_path):
    """The table as ``bench run > log`` writes it: no terminal, so rich's default of 80 columns."""
    import pickle

    subgroups = ["all", "combo_seen0", "combo_seen1", "combo_seen2", "unseen_single"]
    shown = ["pearson_delta_de20", "pearson_delta", "mse_de20", "energy_distance", "pearson_delta_de50"]

    def run(model, seed, values, preset=None):
        table = pd.DataFrame({"cell_type": "K562", "condition": [f"G{i}+H" for i in range(20)],
                              "subgroup": [subgroups[1 + i % 4] for i in range(20)]})
        for metric in shown:
            table[metric] = values
        out = RunResult(model=model, params={}, card_hash="", dataset="d", dataset_sha256="", split="simulation",
                        split_hash="", seed=seed, device="cpu", per_perturbation=table, preset=preset)
        out.metrics = {f"{s}/{m}": float(values.mean()) + 0.001 * seed for s in subgroups for m in shown}
        return out

    import numpy as np

    rng = np.random.default_rng(0)
    results = [run(model, seed, rng.normal(0.3 + 0.1 * k, 0.2, 20), preset)
               for k, (model, preset) in enumerate([("additive", None), ("scbig_no_structure_loss", "fast"),
                                                     ("linear", None)])
               for seed in (1, 2, 3)]
    failed = RunResult(model="gears", params={}, card_hash="", dataset="d", dataset_sha256="", split="simulation",
                       split_hash="", seed=3, device="cpu", status="FAILED",
                       error="ValueError: the test gene IER5L has no Gene Ontology annotation: GEARS cannot place it "
                             "in its graph; choose another split seed")
    path = tmp_path / "results.pickle"
    path.write_bytes(pickle.dumps((results + [failed], shown, {"additive", "linear"})))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        subprocess.run([sys.executable, "-c", PRINT_TO_A_FILE, str(path)], stdout=out, env=env, check=True)
    text = log.read_text()
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80, text
    for metric in shown:
        assert sum(line.split()[1:2] == [metric] or f"  {metric}" in line for line in lines if "subgroup" in line), text
    for subgroup in subgroups:
        assert sum(line.split()[:1] == [subgroup] for line in lines) >= 3, text
    assert "scbig_no_structure_loss [fast] · 3 seeds" in text
    assert "FAILED seed 3: ValueError: the test gene IER5L" in text and "choose another split seed" in text
    from bench.evaluation.stats import over_seeds

    for k, label in [(1, "scbig_no_structure_loss [fast]"), (2, "linear")]:
        mean = over_seeds([r.metrics["combo_seen1/pearson_delta_de20"] for r in results[3 * k:3 * k + 3]])
        assert str(mean) in text
    intervals = [line.split("Δ ", 1)[1] for line in lines if "Δ " in line and "[" in line and "minus" not in line]
    assert len(intervals) == 2 * len(subgroups)
    assert all(interval.count("[") == 1 and interval.rstrip("*").endswith("]") for interval in intervals), intervals
