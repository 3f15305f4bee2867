"""`bench` end to end, as a user runs it: whole processes, real tracking, one-line errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import bench, real_data_file

from bench.core import paths


def tracked_runs(tmp_path, dataset):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs.db'}")
    experiment = mlflow.get_experiment_by_name(f"bench/{dataset}")
    runs = mlflow.search_runs([experiment.experiment_id])
    return runs[runs["tags.model"] != "ceiling"], mlflow  # the data ceilings that `bench run` adds are not models


@pytest.mark.slow
def test_run_on_norman_subset_is_tracked_and_makes_a_leaderboard(workdir, tmp_path):
    real_data_file("perturbench_devel.h5ad")
    out = bench("run", "--model", "linear,additive", "--split", "simulation", "--dataset", "norman_subset",
                "--seeds", "1-2", **workdir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "dataset: norman_subset"
    assert "combo_seen0" in out.stdout and "pearson_delta_de20" in out.stdout
    runs, mlflow = tracked_runs(tmp_path, "norman_subset")
    assert len(runs) == 4 and set(runs["tags.model"]) == {"linear", "additive"}
    frozen = paths.splits_dir() / "norman_subset" / "simulation-seed1.json"
    expected_hash = hashlib.sha256(frozen.read_bytes()).hexdigest()
    seed1 = runs[runs["tags.seed"] == "1"]
    assert set(seed1["tags.split_sha256"]) == {expected_hash}
    for tag in ("dataset_sha256", "card_sha256", "git_commit", "version.torch", "device", "wall_time_s", "peak_memory_mb",
                "numeric.cpu", "numeric.kernels", "numeric.blas", "numeric.threads", "numeric.variables"):
        assert runs[f"tags.{tag}"].notna().all(), tag
    assert runs["metrics.combo_seen1/pearson_delta_de20"].notna().all()  # a subgroup both seeds test
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs["run_id"].iloc[0])}
    assert {"per_perturbation.csv", "predictions.h5ad", "split.json"} <= artifacts

    out = bench("leaderboard", "--dataset", "norman_subset", **workdir)
    assert out.returncode == 0, out.stderr
    board = tmp_path / "leaderboards"
    text = (board / "norman_subset.md").read_text()
    assert "`splits/norman_subset/simulation-seed2.json`" in text and "Reference: **additive**" in text
    assert "| linear (baseline) | 2 |" in text
    assert "### gi: genetic interactions of the test doubles" in text and "### gi_class_agreement" in text
    assert "| 1 | MAPK1+TGFBR2 | epistasis | 0.28 |" in text  # the observed class, and the probability it is the true one
    assert sorted(p.name for p in board.glob("*.png")) == [
        f"norman_subset_simulation_{kind}.png" for kind in
        ("bars_gi_class_agreement", "bars_gi_magnitude_error", "bars_mse_de20", "bars_pearson_delta",
         "bars_pearson_delta_de20", "scatter")]


@pytest.mark.slow
def test_scbig_runs_end_to_end_on_unseen_doubles(workdir, tmp_path):
    real_data_file("perturbench_devel.h5ad")
    out = bench("run", "--model", "scbig", "--split", "unseen_double", "--dataset", "norman_subset",
                "--preset", "fast", "--seeds", "1", **workdir)
    assert out.returncode == 0, out.stderr
    assert "combo_seen0" in out.stdout and "failed" not in out.stderr
    runs, _ = tracked_runs(tmp_path, "norman_subset")
    assert list(runs["tags.model"]) == ["scbig"] and runs["metrics.all/energy_distance"].notna().all()

@pytest.mark.slow
def test_fresh_offline_machine_runs_on_the_simulator(workdir, tmp_path):
    empty_store = tmp_path / "store"
    empty_store.mkdir()
    env = {**workdir["env"], "BENCH_DATA_DIR": str(empty_store)}
    out = bench("run", "--model", "linear", "--split", "unseen_double", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert "synthetic" in first and "bench data fetch norman" in first
    assert "combo_seen0" in out.stdout


ADAPTERS = """
import os
import signal


class Crashing:
    def fit(self, train):
        raise RuntimeError("out of cheese")

    def predict(self, query):
        raise RuntimeError("unreachable")


class Killed(Crashing):
    def fit(self, train):
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does
"""


def user_cards(tmp_path, workdir, *names: str) -> dict:
    """Cards ``names`` (classes of ADAPTERS) in a user card folder; the environment that finds them."""
    cards = tmp_path / "cards"
    cards.mkdir()
    for name in names:
        (cards / f"{name.lower()}.toml").write_text(
            f'name = "{name.lower()}"\nadapter = "test_adapters:{name}"\ndescription = "t"\ncitation = "t"\n')
    (tmp_path / "test_adapters.py").write_text(ADAPTERS)
    return {**workdir["env"], "BENCH_CARDS_DIR": str(cards), "PYTHONPATH": str(tmp_path)}


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_failing_model_does_not_stop_the_others(workdir, tmp_path, jobs):
    out = bench("run", "--model", "crashing,mean", "--dataset", "synthetic", "--split", "simulation",
                "--seeds", "1-2", "--jobs", jobs, cwd=tmp_path, env=user_cards(tmp_path, workdir, "Crashing"))
    assert out.returncode == 1
    assert "failed: crashing seed 1: RuntimeError: out of cheese" in out.stderr
    runs, _ = tracked_runs(tmp_path, "synthetic")
    assert sorted(zip(runs["tags.model"], runs["tags.seed"], runs["status"])) == [
        ("crashing", "1", "FAILED"), ("crashing", "2", "FAILED"), ("mean", "1", "FINISHED"), ("mean", "2", "FINISHED")]
    assert runs.loc[runs["tags.model"] == "crashing", "tags.error"].all()


@pytest.mark.slow
def test_a_killed_worker_fails_its_own_run_only(workdir, tmp_path):
    out = bench("run", "--model", "killed,mean,additive", "--dataset", "synthetic", "--split", "simulation",
                "--seeds", "1-2", "--jobs", "2", cwd=tmp_path, env=user_cards(tmp_path, workdir, "Killed"))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "failed: killed seed 1: worker process killed by SIGKILL (out of memory?)" in out.stderr
    runs, _ = tracked_runs(tmp_path, "synthetic")
    assert sorted(zip(runs["tags.model"], runs["tags.seed"], runs["status"])) == [
        ("additive", "1", "FINISHED"), ("additive", "2", "FINISHED"), ("killed", "1", "FAILED"),
        ("killed", "2", "FAILED"), ("mean", "1", "FINISHED"), ("mean", "2", "FINISHED")]
    assert set(runs.loc[runs["tags.model"] == "killed", "tags.error"]) == {
        "worker process killed by SIGKILL (out of memory?)"}
    assert runs.loc[runs["tags.model"] == "mean", "metrics.all/pearson_delta_de20"].notna().all()


def test_debug_shows_the_traceback(workdir):
    out = bench("--debug", "run", "--model", "lineer", **workdir)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_list_shows_every_section(workdir):
    out = bench("list", **workdir)
    assert out.returncode == 0
    for word in ("linear", "norman_subset", "unseen_double", "pearson_delta_de20", "higher is better"):
        assert word in out.stdout


def test_list_names_every_card_dataset_split_and_metric_whole_in_a_log_file(workdir, monkeypatch):
    from bench.core import registry
    from bench.data.manifest import all_manifests
    from bench.evaluation.metric_catalog import METRICS
    from bench.evaluation.split_settings import DESCRIPTIONS
    from rich.cells import cell_len

    monkeypatch.delenv("COLUMNS", raising=False)  # into a file: rich's 80 columns
    out = bench("list", cwd=workdir["cwd"])
    assert out.returncode == 0 and max(map(cell_len, out.stdout.splitlines())) <= 80, out.stdout  # x̂: one cell
    cells = {cell.strip() for line in out.stdout.splitlines() for cell in line.split("│")}
    for name in [*registry.all_cards(), *all_manifests(), *DESCRIPTIONS, *METRICS]:
        assert name in cells, f"{name} is not whole in:\n{out.stdout}"


def test_every_command_has_help(workdir):
    for command in (["--help"], ["run", "--help"], ["list", "--help"], ["data", "--help"], ["sweep", "--help"],
                    ["leaderboard", "--help"], ["check", "--help"], ["export", "--help"], ["score", "--help"]):
        out = bench(*command, **workdir)
        assert out.returncode == 0 and "Usage" in out.stdout


def test_installed_console_script_handles_errors(workdir):
    script = Path(sys.executable).with_name("bench")
    env = {**os.environ, **workdir["env"]}
    out = subprocess.run(
        [str(script), "run", "--model", "lineer"], capture_output=True, text=True, cwd=workdir["cwd"], env=env
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr and "did you mean" in out.stderr


def test_a_seed_without_a_committed_split_says_so_in_one_line(workdir, tmp_path):
    real_data_file("perturbench_devel.h5ad")
    env = {**workdir["env"], "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    out = bench("run", "--model", "mean", "--dataset", "norman_subset", "--seeds", "1,6", "--no-track",
                cwd=workdir["cwd"], env=env)
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stdout.splitlines() if "not committed with bench" in line]
    assert said == [f"simulation seed(s) 6 of norman_subset: not committed with bench, so made on this machine and "
                    f"kept in {tmp_path / 'cache' / 'splits' / 'norman_subset'} (their test sets are nobody else's; "
                    "the leaderboard notes their runs)"]
