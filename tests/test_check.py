"""`bench check`: a reference is written by --update, then a deliberately broken model must fail it."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from bench import regression
from bench.adapters.baselines import AdditiveModel
from bench.api import Prediction
from bench.cli import app
from bench.cli_check import _diff_table
from bench.errors import BenchError

HEADER = ",".join(regression.COLUMNS)
LINES = [
    "synthetic,simulation,additive,default,1-2,pearson_delta_de20,all",
    "synthetic,simulation,additive,default,1-2,mse_de20,all",
    "synthetic,simulation,mean,default,1,pearson_delta_de20,all",
    "synthetic,simulation,linear,fast,1,pearson_delta_de20,all",
]


def check(*args: str):
    return CliRunner().invoke(app, ["check", *args])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "reference.csv"
    path.write_text(HEADER + "\n" + "\n".join(line + ",,,," for line in LINES) + "\n")
    with pytest.MonkeyPatch.context() as patch:  # the per-test cache fixture does not reach module fixtures
        patch.setenv("BENCH_CACHE_DIR", os.environ.get("BENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "bench-cache")))
        result = check("--reference", str(path), "--update")
    assert result.exit_code == 0, result.output
    return path


def test_update_fills_in_values_and_tolerances_from_the_seed_spread(reference):
    table = pd.read_csv(reference)
    assert list(table.columns) == regression.COLUMNS and len(table) == len(LINES)
    assert table["n_seeds"].tolist() == [2, 2, 1, 1]
    first = table.iloc[0]
    assert first["tolerance"] == pytest.approx(max(first["sd"] / np.sqrt(2), 0.01 * abs(first["mean"]), 0.001), abs=1e-6)
    assert table.iloc[2]["tolerance"] == pytest.approx(max(0.01 * abs(table.iloc[2]["mean"]), 0.001), abs=1e-6)


def test_an_unchanged_model_passes(reference):
    result = check("--reference", str(reference))
    assert result.exit_code == 0, result.output
    assert "all 4 line(s) within tolerance" in result.output


def test_a_perturbed_prediction_fails_with_a_readable_diff(reference, monkeypatch):
    original = AdditiveModel.predict

    def perturbed(self, query):
        prediction = original(self, query)
        noise = np.random.default_rng(0).normal(0, 0.5, prediction.means.shape)
        return Prediction(means=prediction.means + noise)

    monkeypatch.setattr(AdditiveModel, "predict", perturbed)
    result = check("--reference", str(reference))
    assert result.exit_code == 1, result.output
    regressed = [line for line in result.output.splitlines() if line.startswith("REGRESSED: ")]
    assert len(regressed) == 2, result.output  # both additive metrics; mean is untouched
    assert all(line.startswith("REGRESSED: additive on synthetic/simulation seeds 1-2: all/") for line in regressed)
    assert "2 of 4 line(s) regressed or failed" in result.output


def test_a_model_that_now_fails_fails_the_check(reference, monkeypatch):
    def broken(self, train):
        raise RuntimeError("the fit broke")

    monkeypatch.setattr(AdditiveModel, "fit", broken)
    result = check("--reference", str(reference))
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("FAILED: ")]
    assert len(failed) == 2 and all("seed 1 failed: RuntimeError: the fit broke" in line for line in failed), result.output


def test_the_diff_table_shows_presets_and_errors_verbatim():
    line = dict(zip(regression.COLUMNS, ["synthetic", "simulation", "linear", "fast", "1", "mse_de20", "all",
                                         0.5, 0.1, 2, 0.07]))
    verdicts = pd.DataFrame([{**line, "now": 0.7, "change": 0.2, "verdict": "failed", "detail": "seed 1 failed: [bold]x[/]"}])
    console = Console(width=250, record=True)
    console.print(_diff_table(verdicts))
    text = console.export_text()
    assert "linear [fast] synthetic/simulation seeds 1" in text and "failed: seed 1 failed: [bold]x[/]" in text


def test_a_line_without_values_asks_for_update(tmp_path):
    path = tmp_path / "reference.csv"
    path.write_text(HEADER + "\n" + LINES[0] + ",,,,\n")
    with pytest.raises(BenchError, match="line 2: no reference mean; run `bench check --update`"):
        regression.read_reference(path)


@pytest.mark.parametrize("text, message", [
    ("dataset,model\nx,y\n", "lacks column"),
    (HEADER + "\n", "names no configuration"),
    (HEADER + "\nsynthetic,simulation,mean,default,1,pearson_r2,all,0.1,0,1,0.01\n", "unknown metric 'pearson_r2'"),
    (HEADER + "\nsynthetic,simulation,mean,default,1-x,mse,all,0.1,0,1,0.01\n", "line 2: seeds '1-x' is not a seed list"),
])
def test_bad_reference_files_get_one_line_errors(tmp_path, text, message):
    path = tmp_path / "reference.csv"
    path.write_text(text)
    with pytest.raises(BenchError, match=message):
        regression.read_reference(path)
