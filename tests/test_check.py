"""`bench check`: a reference is written by --update, then a deliberately broken model must fail it."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import real_data_file
from rich.console import Console
from typer.testing import CliRunner

from bench.cli.app import app
from bench.cli.check import _diff_lines
from bench.core import numeric_env, paths
from bench.core.errors import BenchError
from bench.workflows import reference_check

HEADER = ",".join(reference_check.COLUMNS)
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
    path.write_text(HEADER + "\n" + "\n".join(line + ",,,,,," for line in LINES) + "\n")
    with pytest.MonkeyPatch.context() as patch:  # the per-test cache fixture does not reach module fixtures
        patch.setenv("BENCH_CACHE_DIR", os.environ.get("BENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "bench-cache")))
        result = check("--reference", str(path), "--update", "--force")  # from this tree, committed or not
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.slow
def test_update_fills_in_values_and_tolerances_from_the_seed_spread(reference):
    table = pd.read_csv(reference)
    assert list(table.columns) == reference_check.COLUMNS and len(table) == len(LINES)
    assert table["n_seeds"].tolist() == [2, 2, 1, 1]
    first = table.iloc[0]
    assert first["tolerance"] == pytest.approx(max(first["sd"] / np.sqrt(2), 0.01 * abs(first["mean"]), 0.001), abs=1e-6)
    assert table.iloc[2]["tolerance"] == pytest.approx(max(0.01 * abs(table.iloc[2]["mean"]), 0.001), abs=1e-6)
    assert set(table["numeric_profile"]) == {numeric_env.PROFILE_NAME}
    assert set(table["recorded_on"]) == {numeric_env.cpu_model()}


@pytest.mark.slow
def test_an_unchanged_model_passes(reference):
    result = check("--reference", str(reference))
    assert result.exit_code == 0, result.output
    assert "all 4 line(s) within tolerance (largest change 0.0000)" in result.output


ADAPTERS = """
import numpy as np

from bench.adapters.baselines import AdditiveModel
from bench.core.api import Prediction


class NoisyAdditive(AdditiveModel):
    def predict(self, query):
        prediction = super().predict(query)
        noise = np.random.default_rng(0).normal(0, 0.5, prediction.means.shape)
        return Prediction(means=prediction.means + noise)


class BrokenAdditive(AdditiveModel):
    def fit(self, train):
        raise RuntimeError("the fit broke")
"""


def catalog_with(tmp_path, monkeypatch, card: str, old: str, new: str) -> None:
    """A copy of the catalog (``BENCH_CATALOG``) whose ``card`` has ``old`` replaced by ``new``, with the
    adapters above importable here and by the check's worker processes."""
    catalog = tmp_path / "catalog"
    shutil.copytree(paths.catalog_dir(), catalog)
    path = catalog / "models" / f"{card}.toml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    (tmp_path / "changed_adapters.py").write_text(ADAPTERS)
    monkeypatch.setenv("BENCH_CATALOG", str(catalog))
    monkeypatch.syspath_prepend(str(tmp_path))  # resolving a card's parameters reads its adapter's defaults
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))


ADDITIVE = "bench.adapters.baselines:AdditiveModel"


@pytest.mark.slow
def test_a_perturbed_prediction_fails_with_a_readable_diff(reference, tmp_path, monkeypatch):
    catalog_with(tmp_path, monkeypatch, "additive", ADDITIVE, "changed_adapters:NoisyAdditive")
    result = check("--reference", str(reference))
    assert result.exit_code == 1, result.output
    regressed = [line for line in result.output.splitlines() if line.startswith("REGRESSED: ")]
    assert len(regressed) == 2, result.output  # both additive metrics; mean is untouched
    assert all(line.startswith("REGRESSED: additive on synthetic/simulation seeds 1-2: all/") for line in regressed)
    assert "2 of 4 line(s) regressed or failed" in result.output


@pytest.mark.slow
def test_a_model_that_now_fails_fails_the_check(reference, tmp_path, monkeypatch):
    catalog_with(tmp_path, monkeypatch, "additive", ADDITIVE, "changed_adapters:BrokenAdditive")
    result = check("--reference", str(reference))
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("FAILED: ")]
    assert len(failed) == 2 and all("seed 1 failed: RuntimeError: the fit broke" in line for line in failed), result.output


def test_the_diff_table_shows_presets_and_errors_verbatim_within_80_columns():
    line = dict(zip(reference_check.COLUMNS, ["synthetic", "simulation", "scbig_no_structure_loss", "fast", "1-2",
                                         "discrimination_score_l1", "unseen_single", 0.5, 0.1, 2, 0.07]))
    detail = ("seed 1 failed: [bold]x[/] ValueError: the test gene IER5L has no Gene Ontology annotation, so GEARS "
              "cannot place it in its graph")
    verdicts = pd.DataFrame([{**line, "now": 0.7, "change": 0.2, "verdict": "regressed", "detail": detail},
                             {**line, "metric": "mse_de20", "now": 0.5, "change": 0.0, "verdict": "ok", "detail": ""}])
    out = io.StringIO()
    console = Console(file=out, markup=False)  # as bench's consoles print into a log file: 80 columns
    for text in _diff_lines(verdicts, console.width):
        console.print(text, soft_wrap=True)
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) <= 80, out.getvalue()
    lines = lines[1:]  # the title takes two
    assert "scbig_no_structure_loss [fast] synthetic/simulation seeds 1-2" in lines
    assert lines[1].split() == ["metric", "ref.", "now", "change", "tol.", "verdict"]
    assert lines[3].split() == ["unseen_single/discrimination_score_l1", "0.5000", "0.7000", "+0.2000", "0.0700",
                                "regressed"]
    assert lines[6].split() == ["unseen_single/mse_de20", "0.5000", "0.5000", "+0.0000", "0.0700", "ok"]
    assert " ".join(line.strip() for line in lines[4:6]) == detail


def test_a_line_without_values_asks_for_update(tmp_path):
    path = tmp_path / "reference.csv"
    path.write_text(HEADER + "\n" + LINES[0] + ",,,,,,\n")
    with pytest.raises(BenchError, match="line 2: no reference mean; run `bench check --update`"):
        reference_check.read_reference(path)


VALUES = ',0.1,0,1,0.01,"x86-64-v3, 1 thread",cpu'
GOOD = "synthetic,simulation,mean,default,1,mse,all" + VALUES


@pytest.mark.parametrize("text, message", [
    ("dataset,model\nx,y\n", "lacks column"),
    ("", "cannot read reference file"),
    ("\x00\xff\xfe binary\n", "lacks column"),
    (HEADER + "\n", "names no configuration"),
    (HEADER + "\nsynthetic,simulation,mean,default,1,pearson_r2,all" + VALUES, "line 2: unknown metric 'pearson_r2'"),
    (HEADER + "\nsynthetic,simulation,mean,default,1-x,mse,all" + VALUES, "line 2: seeds '1-x' is not a seed list"),
    (HEADER + f"\n{GOOD}\nsynthetc,simulation,mean,default,1,mse,all" + VALUES, "line 3: unknown dataset 'synthetc'"),
    (HEADER + f"\n{GOOD}\nsynthetic,simulaton,mean,default,1,mse,all" + VALUES, "line 3: unknown split"),
    (HEADER + f"\n{GOOD}\nsynthetic,simulation,maen,default,1,mse,all" + VALUES, "line 3: unknown model 'maen'"),
    (HEADER + f"\n{GOOD}\nsynthetic,simulation,linear,fats,1,mse,all" + VALUES, "line 3: unknown preset"),
    (HEADER + f"\n{GOOD}\nsynthetic,simulation,mean,default,1,mse,combo_seen3" + VALUES, "line 3: unknown subgroup"),
    (HEADER + f"\n{GOOD}\n{GOOD}\n", "line 3 repeats an earlier line"),
    (HEADER + "\nsynthetic,simulation,mean,default,1,mse,all" + VALUES.replace("0.01", "-0.01"),
     "line 2: sd and tolerance must be non-negative"),
    (HEADER + "\nsynthetic,simulation,mean,default,1,mse,all,0.1,0,1,0.01,native,cpu\n",
     "line 2: its values were recorded under numeric profile 'native'"),
])
def test_bad_reference_files_get_one_line_errors(tmp_path, text, message):
    path = tmp_path / "reference.csv"
    path.write_bytes(text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text)
    with pytest.raises(BenchError, match=message):
        reference_check.read_reference(path)


UNPINNED = """
from bench.core import registry
from bench.workflows import runner
from bench.data.datasets import load_dataset
from bench.data.knowledge import StoreGeneKnowledge
card = registry.find_card("cpa")
spec = runner.RunSpec(card, registry.resolve_params(card, "fast"), "norman_subset", "simulation", 1, "fast")
result = runner.run(spec, runner.PreparedDataset.of(load_dataset("norman_subset")), knowledge=StoreGeneKnowledge())
print(result.metrics["all/pearson_delta_de20"])
"""
# Settings that emulate other CPUs: baseline ATen kernels, MKL's SSE2 branch, old OpenBLAS kernels.
KERNELS = [{}, {"ATEN_CPU_CAPABILITY": "default"}, {"MKL_CBWR": "COMPATIBLE"}, {"OPENBLAS_CORETYPE": "Prescott"}]


@pytest.mark.slow
def test_the_check_does_not_move_with_the_cpu_kernels_but_catches_a_broken_card(tmp_path, monkeypatch):
    """cpa's fast preset on norman_subset seed 1 scores 0.228 with this machine's kernels and 0.130 with
    baseline ATen kernels; under the check's pinned profile it scores the same whatever the machine's
    settings, and an untrained cpa (learning rate 1e-9) still fails the check."""
    real_data_file("perturbench_devel.h5ad")
    unpinned = [float(subprocess.run([sys.executable, "-c", UNPINNED], capture_output=True, text=True, check=True,
                                     env={**os.environ, **kernels}).stdout) for kernels in KERNELS[:2]]
    assert abs(unpinned[0] - unpinned[1]) > 0.05, unpinned  # the settings matter to an unpinned run
    path = tmp_path / "reference.csv"
    path.write_text(HEADER + "\nnorman_subset,simulation,cpa,fast,1,pearson_delta_de20,all,,,,,,\n")
    assert check("--reference", str(path), "--update", "--force").exit_code == 0
    for kernels in KERNELS:
        with monkeypatch.context() as patch:
            for name, value in kernels.items():
                patch.setenv(name, value)
            result = check("--reference", str(path))
        assert result.exit_code == 0 and "within tolerance (largest change 0.0000)" in result.output, (kernels, result.output)
    catalog_with(tmp_path, monkeypatch, "cpa", "learning_rate = 0.003", "learning_rate = 1e-9")
    result = check("--reference", str(path))
    assert result.exit_code == 1
    assert "REGRESSED: cpa [fast] on norman_subset/simulation seeds 1: all/pearson_delta_de20" in result.output
