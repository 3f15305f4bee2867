"""What a tracked run holds besides its scores: artifacts beside the SQLite store, its real start and end,
the training curve its model reported, and the environment it ran on."""

from __future__ import annotations

import importlib.metadata
import os
import textwrap

import pytest
from conftest import adapter_catalog
from mlflow import MlflowClient

from bench.core import registry
from bench.core.api import RunResult
from bench.core.errors import BenchError
from bench.data.datasets import Dataset
from bench.evaluation.metric_catalog import CURVE, METRICS_VERSION, is_test_metric
from bench.workflows import run_environment, runner, source_state, tracking
from bench.workflows.execution import execute

ADAPTERS = textwrap.dedent(
    '''
    import os
    import signal
    import time

    import pandas as pd
    from bench.core.api import Prediction

    class Reporting:
        """Reports three validation values while it fits, 0.4 s apart."""
        def fit(self, train):
            for step, value in ((0, 0.1), (5, 0.25), (10, 0.5)):
                time.sleep(0.4)
                train.report(step, value)
        def predict(self, query):
            return Prediction(pd.DataFrame(0.0, index=query.conditions, columns=query.genes))

    class Killed(Reporting):
        def fit(self, train):
            os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does
    '''
)
REPORTED = [(0, 0.1), (5, 0.25), (10, 0.5)]


@pytest.fixture
def cards(tmp_path, monkeypatch):
    """The cards ``reporting`` and ``killed``, importable by worker processes too."""
    adapter_catalog(tmp_path, monkeypatch, "reporting_adapters", ADAPTERS, {"reporting": "Reporting", "killed": "Killed"})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))


@pytest.fixture(scope="module")
def prepared(small_synthetic):
    return runner.PreparedDataset.of(Dataset("synthetic_small", small_synthetic, "a" * 64))


def result_of(dataset: str = "tracked") -> RunResult:
    return RunResult(model="m", params={"ridge": 0.1}, card_hash="c", dataset=dataset, dataset_sha256="d" * 64,
                     split="simulation", split_hash="s", seed=1, device="cpu", split_json="{}")


def files_under(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_artifacts_go_beside_the_sqlite_store_whatever_the_working_folder(tmp_path, monkeypatch):
    store, work = tmp_path / "store", tmp_path / "work"
    store.mkdir()
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    run_id = tracking.log_run(result_of())
    parent = tracking.SweepParent("swept", "study", "sqlite:///sweeps.db", {"model": "m"}).run_id()
    trial = tracking.log_run(result_of("swept"), parent, {"sweep_trial": "0"})

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    for dataset, run in (("tracked", run_id), ("swept", trial)):
        experiment = client.get_experiment_by_name(f"bench/{dataset}")
        assert experiment.artifact_location == str(store / "mlruns" / f"bench_{dataset}")
        assert {a.path for a in client.list_artifacts(run)} == {"split.json"}
        assert (store / "mlruns" / f"bench_{dataset}" / run / "artifacts" / "split.json").read_text() == "{}"
    assert files_under(work) == []


def test_the_default_store_keeps_its_artifacts_in_mlruns_of_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_id = tracking.log_run(result_of())
    assert (tmp_path / "mlruns" / "bench_tracked" / run_id / "artifacts" / "split.json").is_file()
    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_an_existing_experiment_keeps_its_artifact_location(tracking_store):
    elsewhere = tracking_store / "chosen"
    client = MlflowClient(tracking.tracking_uri())
    client.create_experiment("bench/tracked", artifact_location=str(elsewhere))
    run_id = tracking.log_run(result_of())
    assert files_under(elsewhere) == [f"{run_id}/artifacts/split.json"]
    assert not (tracking_store / "mlruns").exists()


@pytest.mark.slow
def test_an_experiment_created_meanwhile_by_another_process_is_used(tracking_store):
    class LateClient:
        """A client that does not see the experiment on its first look, as when another process creates
        it between this one's look and its create_experiment (servers and database servers have no lock)."""
        def __init__(self, client):
            self.client, self.looked = client, False

        def get_experiment_by_name(self, name):
            if not self.looked:
                self.looked = True
                return None
            return self.client.get_experiment_by_name(name)

        def create_experiment(self, *args, **kwargs):
            return self.client.create_experiment(*args, **kwargs)

    client = MlflowClient(tracking.tracking_uri())
    existing = client.create_experiment("bench/tracked")
    assert tracking._experiment_id(LateClient(client), "tracked") == existing


@pytest.mark.parametrize("uri", ["http://localhost:5000", "postgresql://user@host/db", "sqlite://"])
def test_servers_and_database_servers_place_artifacts_themselves(uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking.artifact_root() is None


def test_a_relative_sqlite_store_keeps_artifacts_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///runs/here.db")
    assert tracking.artifact_root() == tmp_path / "runs" / "mlruns"


@pytest.mark.slow
def test_a_deleted_experiment_is_a_one_line_error(tracking_store):
    tracking.log_run(result_of())
    client = MlflowClient(tracking.tracking_uri())
    number = client.get_experiment_by_name("bench/tracked").experiment_id
    client.delete_experiment(number)
    with pytest.raises(BenchError, match=f"restore --experiment-id {number}") as raised:
        tracking.log_run(result_of())
    assert "\n" not in str(raised.value) and f"--experiment-ids {number}" in str(raised.value)


def test_a_run_whose_logging_fails_ends_failed_and_is_kept(tracking_store, monkeypatch):
    def broken(result, folder):
        raise OSError("disk full")

    monkeypatch.chdir(tracking_store)
    monkeypatch.setattr(tracking, "_write_artifacts", broken)
    with pytest.raises(BenchError, match="failed while logging m/simulation/seed1 \\(disk full\\); the run is kept in"):
        tracking.log_run(result_of())
    runs = tracking.runs("tracked")
    assert list(runs["status"]) == ["FAILED"]  # though the run itself finished: its scores were not stored
    assert len(list((tracking_store / "unlogged-runs").iterdir())) == 1


def test_a_kept_run_stays_when_its_import_fails_and_goes_when_it_succeeds(tracking_store, monkeypatch):
    def broken(result, folder):
        raise OSError("disk full")

    monkeypatch.chdir(tracking_store)
    write_artifacts = tracking._write_artifacts
    monkeypatch.setattr(tracking, "_write_artifacts", broken)
    with pytest.raises(BenchError, match="the run is kept in"):
        tracking.log_run(result_of())
    [kept] = (tracking_store / "unlogged-runs").iterdir()
    with pytest.raises(BenchError, match=f"failed while logging m/simulation/seed1 \\(disk full\\); {kept} stays"):
        tracking.import_run(kept)
    assert kept.exists()
    monkeypatch.setattr(tracking, "_write_artifacts", write_artifacts)
    run_id = tracking.import_run(kept)
    assert not kept.exists()
    runs = tracking.runs("tracked").drop_duplicates("run_id").set_index("run_id")
    assert runs.loc[run_id, "status"] == "FINISHED"


def test_runs_are_flat_rows_one_per_metric_and_nothing_of_mlflows_layout(tracking_store):
    assert list(tracking.runs("tracked").columns) == [*tracking.RUN_COLUMNS, *tracking.SCORE_COLUMNS]  # none yet
    finished = result_of()
    finished.metrics = {"all/pearson": 0.5, "combo_seen1/pearson": 0.25, "halving/0/all/mse": 0.125}
    finished.started_ms = 1_700_000_000_000
    finished_id = tracking.log_run(finished)
    failed = result_of()
    failed.seed, failed.status, failed.error = 2, "FAILED", "ModelError: boom"
    failed_id = tracking.log_run(failed)
    skipped = result_of()
    skipped.seed, skipped.status = 3, "SKIPPED"
    skipped_id = tracking.log_run(skipped)
    parent = tracking.SweepParent("tracked", "study", "sqlite:///sweeps.db", {"model": "m"}).run_id()
    trial_id = tracking.log_run(result_of(), parent, {"sweep_trial": "0"})
    client = MlflowClient(tracking.tracking_uri())
    experiment = client.get_experiment_by_name("bench/tracked").experiment_id
    unfinished_id = client.create_run(experiment, tags=tracking.tags(result_of())).info.run_id  # killed while logging

    rows = tracking.runs("tracked")
    assert list(rows.columns) == [*tracking.RUN_COLUMNS, *tracking.SCORE_COLUMNS]
    assert not any(column.startswith(("tags.", "params.", "metrics.")) for column in rows)
    assert set(rows["run_id"]) == {finished_id, failed_id, skipped_id, trial_id, unfinished_id}  # not the parent
    mine = rows[rows["run_id"] == finished_id]
    assert sorted(zip(mine["subgroup"], mine["metric"], mine["value"])) == [
        ("all", "pearson", 0.5), ("combo_seen1", "pearson", 0.25), ("halving/0/all", "mse", 0.125)]
    line = mine.iloc[0]
    assert (line["model"], line["preset"], line["dataset"], line["split"], line["seed"]) == (
        "m", "default", "tracked", "simulation", 1)
    assert (line["dataset_sha256"], line["split_sha256"], line["card_sha256"]) == ("d" * 64, "s", "c")
    assert line["metrics_version"] == METRICS_VERSION and line["git_commit"] == source_state.describe()["git_commit"]
    assert line["params"] == {"ridge": "0.1"} and line["start_time"] == finished.started_ms
    assert line["status"] == "FINISHED" and line["error"] is None and not line["sweep_trial"]
    runs = rows.drop_duplicates("run_id").set_index("run_id")
    assert runs.loc[trial_id, "sweep_trial"]
    assert runs.loc[failed_id, ["status", "error", "seed"]].tolist() == ["FAILED", "ModelError: boom", 2]
    assert runs.loc[skipped_id, "status"] == "SKIPPED" and runs.loc[unfinished_id, "status"] == tracking.UNFINISHED
    without_metrics = rows[rows["run_id"].isin([failed_id, skipped_id])]
    assert len(without_metrics) == 2 and without_metrics[["subgroup", "metric", "value"]].isna().all().all()


def test_a_tracked_run_has_its_real_start_end_and_training_curve(cards, prepared, tracking_store):
    seen = []
    result = runner.run(runner.RunSpec(registry.find_card("reporting"), {}, prepared.name, "simulation", 1), prepared,
                        report=lambda step, value: seen.append((step, value)))
    assert result.ok and seen == REPORTED  # the caller's report still gets every value
    assert [(step, value) for step, value, _ in result.curve] == REPORTED
    assert result.started_ms <= result.curve[0][2] <= result.curve[-1][2] <= result.ended_ms

    run = MlflowClient(tracking.tracking_uri()).get_run(tracking.log_run(result))
    assert (run.info.start_time, run.info.end_time) == (result.started_ms, result.ended_ms)
    assert run.info.end_time - run.info.start_time >= 1200  # the model slept 3 x 0.4 s
    assert abs((run.info.end_time - run.info.start_time) - 1000 * result.wall_time_s) < 1000
    history = MlflowClient(tracking.tracking_uri()).get_metric_history(run.info.run_id, CURVE)
    assert sorted((m.step, m.value, m.timestamp) for m in history) == result.curve
    assert not is_test_metric(CURVE)  # the curve is no test subgroup on a leaderboard


@pytest.mark.slow
def test_runs_in_worker_processes_keep_their_curve_and_times(cards, prepared):
    specs = [runner.RunSpec(registry.find_card(name), {}, prepared.name, "simulation", 1)
             for name in ("reporting", "killed")]
    reported, killed = execute(specs, {prepared.name: prepared}, workers=1)
    assert reported.ok and [(step, value) for step, value, _ in reported.curve] == REPORTED
    assert 0 < reported.started_ms < reported.ended_ms and reported.environment["env.usable_cores"]
    assert killed.status == "FAILED" and "SIGKILL" in killed.error
    assert 0 < killed.started_ms <= killed.ended_ms and killed.wall_time_s > 0


def test_a_run_is_tagged_with_its_packages_cores_and_numeric_environment(cards, prepared, tracking_store):
    result = runner.run(runner.RunSpec(registry.find_card("reporting"), {}, prepared.name, "simulation", 1), prepared)
    tags = MlflowClient(tracking.tracking_uri()).get_run(tracking.log_run(result)).data.tags
    for name in ("scikit-learn", "POT", "torch-geometric", "optuna", "numba", "threadpoolctl", "cell-eval", "typer",
                 "h5py", "matplotlib", "mlflow", "numpy"):
        assert tags[f"version.{name}"] == importlib.metadata.version(name), name
    assert tags["env.cores"] == str(os.cpu_count()) and 1 <= int(tags["env.usable_cores"]) <= os.cpu_count()
    assert tags["env.python"].count(".") == 2 and "env.gpu" not in tags  # a CPU run
    assert tags["numeric.cpu"] and "openblas" in tags["numeric.blas"].lower()
    assert all(len(value) <= 250 for key, value in tags.items() if key.startswith(("env.", "version.")))


def test_a_package_that_is_not_installed_is_absent(monkeypatch):
    monkeypatch.setattr(run_environment, "PACKAGES", ("numpy", "no-such-distribution"))
    assert run_environment.package_versions() == {"numpy": importlib.metadata.version("numpy"),
                                                  "no-such-distribution": "absent"}


def test_a_cuda_run_names_its_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"Test GPU for {device}")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    described = run_environment.describe("cuda")
    assert (described["env.gpu"], described["env.cuda"]) == ("Test GPU for cuda", "12.8")
    assert "env.gpu" not in run_environment.describe("cpu")
