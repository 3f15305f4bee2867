"""``bench sweep``: validation-only objectives, shared studies, failed trials, the tuned card."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import HANG_S, real_data_file
from postgres import postgres

from bench.adapters.baselines import MeanModel
from bench.core import paths, registry
from bench.core.api import Prediction
from bench.core.errors import BenchError, ModelError
from bench.evaluation import splits
from bench.workflows import journal_heartbeat, runner, sweep, tracking
from bench.workflows.execution import execute

QUERIED: list[str] = []


class SpyModel(MeanModel):
    """The mean baseline that remembers every condition it is asked to predict."""

    def __init__(self, level: float = 0.0):
        super().__init__()
        self.level = level

    def fit(self, train) -> None:
        if self.level > 0.8:
            raise ModelError(f"level {self.level:.2f} is too high")
        super().fit(train)

    def predict(self, query) -> Prediction:
        QUERIED.extend(query.conditions)
        return super().predict(query)


SPY = registry.ModelCard(name="spy", adapter="test_sweep:SpyModel", description="spy", citation="-",
                         params={"level": 0.0}, search_space={"level": {"type": "float", "low": 0.0, "high": 1.0}})


@pytest.fixture
def prepared(small_synthetic):
    from bench.data.datasets import Dataset

    return runner.PreparedDataset.of(Dataset("sweep-test-simulation", small_synthetic, "sim-sha"))


def spec_for(card, tmp_path, trials: int, storage: str | None = None) -> sweep.SweepSpec:
    return sweep.SweepSpec(card, "sweep-test-simulation", "simulation", 1, trials, "pearson_delta_de20", "s",
                           storage or f"sqlite:///{tmp_path / 'sweeps.db'}", "cpu", None)


def in_process(spec, prepared):
    study = sweep.open_study(spec)

    def train(run, report):
        return execute([run], {prepared.name: prepared}, report=report)[0]

    objective = sweep.objective_for(spec, study, train, lambda result, number: None)
    return study, sweep.work(spec, study, objective, lambda line: None)


def test_objective_sees_only_validation_conditions(tmp_path, prepared):
    QUERIED.clear()
    study, _ = in_process(spec_for(SPY, tmp_path, 3), prepared)
    split, _ = splits.obtain(prepared.adata, prepared.name, prepared.sha256, "simulation", 1)
    test_conditions = {c for c in split.test}
    assert QUERIED and not set(QUERIED) & test_conditions
    assert set(QUERIED) <= set(split.val)


def test_crashing_trials_fail_with_their_message_and_the_study_goes_on(tmp_path, prepared):
    study, _ = in_process(spec_for(SPY, tmp_path, 8), prepared)
    states = pd.Series([t.state.name for t in study.trials])
    assert (states == "COMPLETE").sum() == 8
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert all(t.params["level"] > 0.8 and "too high" in t.user_attrs["error"] for t in failed)
    assert all(t.params["level"] <= 0.8 for t in study.trials if t.state.name == "COMPLETE")


def test_a_study_for_another_setup_is_refused(tmp_path, prepared):
    in_process(spec_for(SPY, tmp_path, 1), prepared)
    other = spec_for(SPY, tmp_path, 1)
    other.split = "unseen_single"
    with pytest.raises(Exception, match="give another --study name"):
        sweep.open_study(other)


def project_copy(tmp_path):
    """A project folder (``BENCH_CATALOG``) with the linear card, the dataset manifests and norman_subset's splits."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    shutil.copy(paths.models_dir() / "linear.toml", home / "models")
    shutil.copytree(paths.datasets_dir(), home / "datasets")
    shutil.copytree(paths.splits_dir(), home / "splits")
    return home


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_two_workers_complete_exactly_the_requested_trials(tmp_path, kind, monkeypatch):
    real_data_file("perturbench_devel.h5ad")
    home = project_copy(tmp_path)
    with shared_storage(tmp_path, kind) as storage:
        workers = [worker(tmp_path, home, storage, "linear", 6) for _ in range(2)]
        outputs = [w.communicate(timeout=HANG_S) for w in workers]
        assert all(w.returncode == 0 for w in workers), outputs
        study, states = states_of(storage)
        trials, best_value, best_params = study.trials, study.best_value, study.best_params
    assert states.count("COMPLETE") == 6 and "RUNNING" not in states and "WAITING" not in states
    assert len({t.number for t in trials}) == len(trials)
    assert set(states) <= {"COMPLETE", "FAIL"}
    assert all(t.user_attrs.get("surplus") for t in trials if t.state.name == "FAIL")
    assert not (home / "models" / "linear@norman_subset.toml").exists()  # never into the catalog
    card = registry.read_card(tmp_path / "cards" / "linear@norman_subset.toml")
    assert card.extends == "linear" and card.sweep["study"] == "shared"
    assert card.sweep["value"] == pytest.approx(best_value)
    assert {k: card.params[k] for k in best_params} == best_params
    assert_one_parent_and_nothing_running(tmp_path, trials, monkeypatch)


def assert_one_parent_and_nothing_running(tmp_path, trials, monkeypatch):
    """The sweep's MLflow runs: one parent, a finished run under it per complete trial, none RUNNING."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'runs.db'}")
    runs = tracking.search_runs("norman_subset")
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parents) == 1, parents[["run_id", "start_time"]]
    assert set(children["tags.mlflow.parentRunId"]) == set(parents["run_id"])
    complete = sorted(str(t.number) for t in trials if t.state.name == "COMPLETE")
    assert sorted(children.loc[children["status"] == "FINISHED", "tags.sweep_trial"]) == complete
    assert "RUNNING" not in set(runs["status"])
    parent = parents.iloc[0]  # it spans its trials
    assert parent["start_time"] <= children["start_time"].min() and parent["end_time"] >= children["end_time"].max()


class SlowModel(SpyModel):
    """Takes a few seconds to fit, so that a worker can be killed in the middle of a trial."""

    def fit(self, train) -> None:
        time.sleep(4)
        super().fit(train)


def worker(tmp_path, home, storage, model, trials, env=None):
    tests = Path(__file__).parent  # the workers import this checkout's bench, and the test models from here
    env = {**os.environ, "BENCH_CATALOG": str(home), "BENCH_CARDS_DIR": str(tmp_path / "cards"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'runs.db'}",
           "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)]), "COLUMNS": "200", **(env or {})}
    command = [sys.executable, "-m", "bench", "sweep", "--model", model, "--dataset", "norman_subset",
               "--trials", str(trials), "--storage", storage, "--study", "shared"]
    return subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def states_of(storage):
    study = optuna.load_study(study_name="shared", storage=sweep.open_storage(storage))
    return study, [t.state.name for t in study.trials]


def states_now(tmp_path, storage) -> list[str]:
    """The study's trial states; none before the study exists (a storage file is not opened before it
    exists: opening it would create it)."""
    if storage.startswith(("sqlite", "journal")) and not any((tmp_path / f).exists() for f in ("shared.db", "shared.log")):
        return []
    try:
        return states_of(storage)[1]
    except KeyError:
        return []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_a_worker_killed_in_the_last_trial_and_restarted_at_once_loses_nothing(tmp_path, kind, monkeypatch):
    real_data_file("perturbench_devel.h5ad")
    home = project_copy(tmp_path)
    (home / "models" / "slow.toml").write_text(
        'name = "slow"\nadapter = "test_sweep:SlowModel"\ndescription = "slow"\ncitation = "-"\n'
        '[params]\nlevel = 0.0\n[search_space]\nlevel = { type = "float", low = 0.0, high = 0.5 }\n')
    # a grace period longer than a worker takes to start: the restarted worker finds the killed trial RUNNING
    quick = {sweep.HEARTBEAT_S: "1", sweep.GRACE_S: "15"}
    with shared_storage(tmp_path, kind) as storage:
        first = worker(tmp_path, home, storage, "slow", 2, quick)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(0.5)
            states = states_now(tmp_path, storage)
            if states.count("COMPLETE") == 1 and states[-1] == "RUNNING":
                break
        time.sleep(1)  # past the trial's first heartbeat (Optuna never counts a trial without one as stale)
        first.send_signal(signal.SIGKILL)
        first.communicate()
        second = worker(tmp_path, home, storage, "slow", 2, quick)
        out, err = second.communicate(timeout=HANG_S)
        assert second.returncode == 0, err
        study, states = states_of(storage)
        trials = study.trials
    assert states.count("COMPLETE") == 2 and states.count("FAIL") == 1, states
    assert "waiting for trial(s) 1 to end or go stale" in out  # it found the budget taken by the killed trial
    killed = next(t for t in trials if t.state.name == "FAIL")
    retried = [t for t in trials if killed.number in (t.system_attrs.get("failed_trial"), t.user_attrs.get("retry_of"))]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert retried[0].params == killed.params
    assert_one_parent_and_nothing_running(tmp_path, trials, monkeypatch)


@contextlib.contextmanager
def shared_storage(tmp_path, kind: str):
    """The URL of a fresh sweep storage of one kind (for PostgreSQL, a server running meanwhile)."""
    if kind != "postgresql":
        yield f"sqlite:///{tmp_path / 'shared.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'shared.log'}"
        return
    with postgres() as server:
        yield server.url


class ReportingModel(SpyModel):
    """Reports ``-level`` at every step of a pretend training loop (higher is better, as adapters do)."""

    def fit(self, train) -> None:
        for step in range(1, 6):
            train.report(step, -self.level)
        super().fit(train)


def test_trials_that_report_poor_values_are_pruned(tmp_path, prepared):
    card = registry.ModelCard(name="reporting", adapter="test_sweep:ReportingModel", description="r", citation="-",
                              params={"level": 0.0}, search_space={"level": {"type": "float", "low": 0.0, "high": 0.8}})
    study, _ = in_process(spec_for(card, tmp_path, 14), prepared)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert pruned and len(pruned) + len(complete) == 14
    assert all(t.last_step is not None and t.last_step < 5 for t in pruned)
    assert min(t.params["level"] for t in pruned) > min(t.params["level"] for t in complete)


def test_a_worker_gives_up_after_many_failed_trials_in_a_row(tmp_path, prepared):
    card = registry.ModelCard(name="spy", adapter="test_sweep:SpyModel", description="d", citation="-",
                              params={"level": 0.0}, search_space={"level": {"type": "float", "low": 0.9, "high": 1.0}})
    with pytest.raises(BenchError, match="10 trials in a row failed, the last with: .*too high"):
        in_process(spec_for(card, tmp_path, 3), prepared)


def test_bad_input_stops_the_worker_at_once(tmp_path, prepared):
    card = registry.ModelCard(name="spy", adapter="test_sweep:SpyModel", description="d", citation="-",
                              params={"level": 0.0}, search_space={"levle": {"type": "float", "low": 0.0, "high": 1.0}})
    with pytest.raises(BenchError, match="has no parameter 'levle'"):
        in_process(spec_for(card, tmp_path, 3), prepared)




def tables(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def mlflow_store() -> None:
    """Create MLflow's database at the tracking URI (reading a missing store through bench creates nothing)."""
    from mlflow import MlflowClient

    MlflowClient(tracking.tracking_uri()).search_experiments()


def test_a_storage_that_is_not_optunas_is_refused_and_left_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow_store()
    before = tables(tmp_path / "mlflow.db")
    with pytest.raises(BenchError, match="mlflow.db is MLflow's tracking database, not an Optuna storage"):
        sweep.open_storage(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert tables(tmp_path / "mlflow.db") == before
    with sqlite3.connect(tmp_path / "notes.db") as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(BenchError, match="notes.db is not an Optuna storage \\(its tables: notes\\)"):
        sweep.open_storage(f"sqlite:///{tmp_path / 'notes.db'}")
    assert tables(tmp_path / "notes.db") == {"notes"}


@pytest.mark.slow
def test_bench_sweep_refuses_the_mlflow_database_as_storage_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow_store()
    before = tables(tmp_path / "mlflow.db")
    out = subprocess.run([sys.executable, "-m", "bench", "sweep", "--model", "linear", "--storage", "sqlite:///mlflow.db"],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"}, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "MLflow's tracking database" in lines[0], out.stderr
    assert tables(tmp_path / "mlflow.db") == before


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")  # study.ask
@pytest.mark.parametrize("beat", [True, False], ids=["after-its-first-heartbeat", "before-any-heartbeat"])
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_worker_that_finds_the_budget_taken_by_a_dead_trial_waits_and_retries_it(tmp_path, prepared, monkeypatch,
                                                                                    kind, beat):
    monkeypatch.setenv(sweep.HEARTBEAT_S, "1")
    monkeypatch.setenv(sweep.GRACE_S, "1")
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'sweeps.log'}"
    card = registry.ModelCard(name="spy", adapter="test_sweep:SpyModel", description="d", citation="-",
                              params={"level": 0.0}, search_space={"level": {"type": "float", "low": 0.0, "high": 0.5}})
    in_process(spec_for(card, tmp_path, 1, storage), prepared)
    study = sweep.open_study(spec_for(card, tmp_path, 2, storage))
    dead = study.ask({"level": optuna.distributions.FloatDistribution(0.0, 0.5)})  # its worker is killed now
    if beat and kind == "sqlite":
        study._storage.record_heartbeat(dead._trial_id)
    elif beat:
        study._storage.set_trial_system_attr(dead._trial_id, journal_heartbeat.ATTRIBUTE, time.time())
    spec = spec_for(card, tmp_path, 2, storage)
    spec.timeout = 300  # only to end a worker that would wait for the dead trial for ever; it is failed after 1 s
    study, _ = in_process(spec, prepared)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 2 and states.count("FAIL") == 1, states
    retried = [t for t in study.trials if dead.number in (t.system_attrs.get("failed_trial"), t.user_attrs.get("retry_of"))]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE" and retried[0].params == dead.params


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
@pytest.mark.parametrize("variable, value", [(sweep.HEARTBEAT_S, "abc"), (sweep.GRACE_S, "0")])
def test_a_bad_heartbeat_setting_is_refused_before_the_storage_is_opened(tmp_path, monkeypatch, kind, variable, value):
    monkeypatch.setenv(variable, value)
    path = tmp_path / ("sweeps.db" if kind == "sqlite" else "sweeps.log")
    with pytest.raises(BenchError, match=f"^{variable}={value} .*positive whole number of seconds") as error:
        sweep.open_storage(f"sqlite:///{path}" if kind == "sqlite" else f"journal:{path}")
    assert "\n" not in str(error.value) and not path.exists()


@pytest.mark.slow
def test_bench_sweep_refuses_a_bad_heartbeat_setting_in_one_line(tmp_path):
    env = {**os.environ, sweep.HEARTBEAT_S: "abc", "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "bench", "sweep", "--model", "linear", "--no-track"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and f"{sweep.HEARTBEAT_S}=abc" in lines[0], out.stderr
    assert not (tmp_path / "sweeps.db").exists()


@pytest.fixture
def runs_store(tmp_path, monkeypatch):
    """An MLflow store for the test, and a client of it."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'runs.db'}")
    mlflow_store()
    return MlflowClient(tracking.tracking_uri())


def trial_run(client, parent: str, trial: str, status: str = "RUNNING") -> str:
    run = client.create_run(client.get_run(parent).info.experiment_id,
                            tags={"mlflow.parentRunId": parent, "sweep_study": "s", "sweep_trial": trial})
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_workers_that_created_parents_together_end_on_the_oldest(runs_store):
    client = runs_store
    setup = {"model": "spy", "seed": 1}
    worker = tracking.SweepParent("sweep-test", "s", "sqlite:////shared/sweeps.db", setup)
    own = worker.run_id()
    assert worker.run_id() == own and client.get_run(own).info.status == "RUNNING"
    child = trial_run(client, own, "0", "FINISHED")
    # another worker found no parent at the same moment and created one; its clock is a second behind
    theirs = client.get_run(own)
    tags = {k: v for k, v in theirs.data.tags.items() if not k.startswith("mlflow.")}
    older = client.create_run(theirs.info.experiment_id, start_time=theirs.info.start_time - 1000, tags=tags).info.run_id
    assert worker.run_id() == older
    assert client.get_run(own).info.lifecycle_stage == "deleted"
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == older
    assert tracking.SweepParent("sweep-test", "s", "sqlite:////shared/sweeps.db", setup).run_id() == older
    assert tracking.SweepParent("sweep-test", "s", "sqlite:////other/sweeps.db", setup).run_id() not in (own, older)


def test_the_parent_run_spans_the_sweep_from_its_first_worker_to_its_last(runs_store):
    client = runs_store
    first = tracking.SweepParent("sweep-test", "s", "sqlite:////shared/sweeps.db", {"model": "spy"})
    parent = first.begin()
    trial = trial_run(client, parent, "0", "FINISHED")
    first.end()
    ended = client.get_run(parent).info
    assert ended.status == "FINISHED" and ended.start_time <= client.get_run(trial).info.start_time
    assert ended.end_time >= client.get_run(trial).info.end_time
    later = tracking.SweepParent("sweep-test", "s", "sqlite:////shared/sweeps.db", {"model": "spy"})
    assert later.begin() == parent and client.get_run(parent).info.status == "RUNNING"  # a worker joins later
    time.sleep(0.01)
    second = trial_run(client, parent, "1", "FINISHED")
    later.end()
    assert client.get_run(parent).info.end_time >= client.get_run(second).info.end_time > ended.end_time


@pytest.mark.slow
def test_trial_runs_left_running_by_a_dead_worker_are_failed(runs_store):
    client = runs_store
    parent = tracking.SweepParent("sweep-test", "s", "sqlite:////shared/sweeps.db", {"model": "spy"})
    dead, alive, done = (trial_run(client, parent.run_id(), trial, status)
                         for trial, status in (("0", "RUNNING"), ("1", "RUNNING"), ("2", "FINISHED")))
    assert parent.fail_dead_trial_runs(running_trials={1}) == 1
    assert [client.get_run(run).info.status for run in (dead, alive, done)] == ["FAILED", "RUNNING", "FINISHED"]


def test_storage_identity_names_files_by_absolute_path_and_hides_passwords(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sweep.storage_identity("sqlite:///sweeps.db") == f"sqlite:///{tmp_path / 'sweeps.db'}"
    assert sweep.storage_identity("journal:study.log") == f"journal:{tmp_path / 'study.log'}"
    assert sweep.storage_identity("postgresql://u:pa/ss@h/db") == "postgresql://u:***@h/db"
