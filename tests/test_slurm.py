"""``--executor slurm`` on a real single-node Slurm cluster (``scripts/local_slurm.sh``; ``.ci/run`` starts it):
the same metrics as local runs, runs that Slurm ends, ``--resume``, sweeps, the reference check, bad input."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from conftest import HANG_S, bench, real_data_file

from bench.workflows import reference_check, tracking
from bench.workflows.slurm import Submission

pytestmark = pytest.mark.slow
GRID = ["--model", "linear,additive,mean", "--dataset", "norman_subset", "--seeds", "1-2", "--threads", "1"]
SLOW = '''"""Holds its fit while a file named hold lies beside it, then fits the mean baseline."""
import time
from pathlib import Path

from bench.adapters.baselines import MeanModel


class Slow(MeanModel):
    def fit(self, train):
        while Path(__file__).with_name("hold").exists():
            time.sleep(1)
        super().fit(train)
'''


@pytest.fixture(scope="module")
def cluster():
    """A Slurm cluster that answers (``SLURM_CONF``); locally its absence skips, in CI it fails."""
    problem = ""
    if not os.environ.get("SLURM_CONF"):
        problem = "SLURM_CONF is not set"
    elif shutil.which("sbatch") is None:
        problem = "sbatch is not on PATH"
    else:
        answer = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
        if "UP" not in answer.stdout:
            problem = f"scontrol ping says {(answer.stdout + answer.stderr).strip()!r}"
    if problem:
        message = (f"no Slurm cluster ({problem}); start one with `scripts/local_slurm.sh start` and export the "
                   "SLURM_CONF it prints")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def store(folder: Path, **more: str) -> dict:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "COLUMNS": "200", **more}


def tracked(folder: Path, monkeypatch) -> pd.DataFrame:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    return tracking.runs("norman_subset")


def scores(runs: pd.DataFrame) -> pd.Series:
    return runs.set_index(["model", "seed", "subgroup", "metric"])["value"].sort_index()


def test_a_grid_on_slurm_scores_exactly_as_on_this_machine(cluster, tmp_path, monkeypatch):
    real_data_file("perturbench_devel.h5ad")
    on_slurm, here = tmp_path / "slurm", tmp_path / "here"
    on_slurm.mkdir(), here.mkdir()
    submitted = bench("run", *GRID, "--executor", "slurm", "--detach", "--slurm", f"folder={tmp_path / 'jobs'}",
                      env=store(on_slurm), cwd=on_slurm)
    assert submitted.returncode == 0, submitted.stderr
    assert re.search(r"submitted Slurm job \d+: 8 task\(s\)", submitted.stdout), submitted.stdout
    folder = re.search(r"follow it with: bench jobs (\S+)", submitted.stdout)[1]
    followed = bench("jobs", folder, env=store(on_slurm), cwd=on_slurm)
    assert followed.returncode == 0, followed.stderr
    assert "additive (reference)" in followed.stdout and "tracked in sqlite:///" in followed.stdout
    local = bench("run", *GRID, env=store(here), cwd=here)
    assert local.returncode == 0, local.stderr

    slurm_runs, local_runs = tracked(on_slurm, monkeypatch), tracked(here, monkeypatch)
    for runs in (slurm_runs, local_runs):
        ended = runs.drop_duplicates("run_id")
        assert sorted(ended["model"]) == ["additive"] * 2 + ["ceiling"] * 2 + ["linear"] * 2 + ["mean"] * 2
        assert set(ended["status"]) == {"FINISHED"}
    pd.testing.assert_series_equal(scores(slurm_runs), scores(local_runs), check_exact=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{on_slurm / 'mlflow.db'}")
    arrays = {job.split("_")[0] for job in tracking.search_runs("norman_subset")["tags.slurm_job_id"]}
    assert len(arrays) == 1  # one sbatch call: every run is a task of one array


def sacct_end(job: str) -> float:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job, "-o", "End"], capture_output=True, text=True).stdout
    return datetime.fromisoformat(out.split()[0]).timestamp()


def wait_for(condition, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(1)
    raise AssertionError("timed out waiting")


def test_runs_slurm_ends_are_failed_with_its_reason_and_resume_runs_exactly_those(cluster, tmp_path, monkeypatch):
    real_data_file("perturbench_devel.h5ad")
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "slow.py").write_text(SLOW)
    (cards / "slow.toml").write_text('name = "slow"\nadapter = "slow:Slow"\ndescription = "slow"\ncitation = "-"\n')
    (cards / "hold").touch()
    grid = ["run", "--model", "slow,mean", "--dataset", "norman_subset", "--seeds", "1-2", "--executor", "slurm",
            "--slurm", "time=1", "--slurm", f"folder={tmp_path / 'jobs'}"]
    env = {**os.environ, **store(tmp_path, BENCH_CARDS_DIR=str(cards))}
    command = subprocess.Popen([sys.executable, "-m", "bench", *grid], env=env, cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    folder = wait_for(lambda: next((tmp_path / "jobs").glob("run-*/submission.pickle"), None)).parent
    wait_for(lambda: b"fitting" in (folder / "progress-0.json").read_bytes()
             if (folder / "progress-0.json").exists() else False)
    array = Submission.load(folder).array_id
    subprocess.run(["scancel", f"{array}_0"], check=True)
    out, err = command.communicate(timeout=HANG_S)
    assert command.returncode == 1, out + err  # runs failed

    runs = tracked(tmp_path, monkeypatch).drop_duplicates("run_id").set_index(["model", "seed"])
    assert set(runs["status"]) == {"FINISHED", "FAILED"}  # nothing left RUNNING or unfinished
    assert re.fullmatch(r"Slurm ended the task: CANCELLED .*\(it was cancelled \(scancel\)\); log: .*",
                        runs.loc[("slow", 1), "error"])
    assert runs.loc[("slow", 2), "error"].startswith("Slurm ended the task: TIMEOUT (its time limit ran out")
    assert (runs.loc["mean", "status"] == "FINISHED").all()
    logged = tracking.search_runs("norman_subset").set_index("tags.slurm_job_id")["end_time"]
    for task in (0, 1):  # recorded within a minute of Slurm ending the task
        job = f"{array}_{task}"
        assert logged[job].timestamp() - sacct_end(job) < 60

    again = bench("jobs", str(folder), env=store(tmp_path, BENCH_CARDS_DIR=str(cards)), cwd=tmp_path)
    assert again.returncode == 1 and "FAILED seed 1" in again.stdout and "Slurm ended the task: TIMEOUT" in again.stderr
    runs = tracked(tmp_path, monkeypatch).drop_duplicates("run_id")
    assert (runs["status"] == "FAILED").sum() == 2  # following it again records nothing twice

    (cards / "hold").unlink()
    resumed = bench(*grid, "--resume", env=store(tmp_path, BENCH_CARDS_DIR=str(cards)), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resume: 2 of 4 run(s) already finished" in resumed.stdout
    assert re.search(r"submitted Slurm job \d+: 2 task\(s\)", resumed.stdout), resumed.stdout
    latest = tracked(tmp_path, monkeypatch).drop_duplicates("run_id").sort_values("start_time")
    latest = latest[latest["model"] != "ceiling"].groupby(["model", "seed"]).last()
    assert set(latest["status"]) == {"FINISHED"} and len(latest) == 4


def test_sweep_workers_share_one_study_on_slurm(cluster, tmp_path, monkeypatch):
    real_data_file("perturbench_devel.h5ad")
    from test_sweep import assert_one_parent_and_nothing_running, states_of

    storage = f"journal:{tmp_path / 'shared.log'}"
    done = bench("sweep", "--model", "linear", "--dataset", "norman_subset", "--executor", "slurm", "--workers", "2",
                 "--trials", "4", "--storage", storage, "--study", "shared", "--slurm", f"folder={tmp_path / 'jobs'}",
                 env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'runs.db'}",
                      "BENCH_CARDS_DIR": str(tmp_path / "cards")},
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"submitted Slurm job \d+: 2 task\(s\)", done.stdout)
    study, states = states_of(storage)
    assert states.count("COMPLETE") == 4 and set(states) <= {"COMPLETE", "FAIL"}
    assert_one_parent_and_nothing_running(tmp_path, study.trials, monkeypatch)
    assert (tmp_path / "cards" / "linear@norman_subset.toml").exists()
    assert "the study holds 4 complete trial(s); best: trial" in done.stdout


SLOWISH = '''"""The linear model, 8 s slower to fit."""
import time

from bench.adapters.linear import LinearModel


class Slowish(LinearModel):
    def fit(self, train):
        time.sleep(8)
        super().fit(train)
'''


def test_a_preempted_sweep_worker_is_requeued_and_its_trial_retried(cluster, tmp_path, monkeypatch):
    real_data_file("perturbench_devel.h5ad")
    from test_sweep import assert_one_parent_and_nothing_running, states_of

    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "slowish.py").write_text(SLOWISH)
    (cards / "slowish.toml").write_text('name = "slowish"\nadapter = "slowish:Slowish"\ndescription = "-"\n'
                                        'citation = "-"\n[search_space]\nridge = { type = "float", low = 0.01, '
                                        'high = 10.0 }\n')
    storage = f"journal:{tmp_path / 'shared.log'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'runs.db'}", "BENCH_CARDS_DIR": str(cards),
           "BENCH_SWEEP_HEARTBEAT_S": "1", "BENCH_SWEEP_GRACE_S": "10", "COLUMNS": "200"}
    command = subprocess.Popen(
        [sys.executable, "-m", "bench", "sweep", "--model", "slowish", "--dataset", "norman_subset", "--executor",
         "slurm", "--workers", "2", "--trials", "6", "--storage", storage, "--study", "shared", "--slurm",
         f"folder={tmp_path / 'jobs'}"],
        env=env, cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    folder = wait_for(lambda: next((tmp_path / "jobs").glob("sweep-*/submission.pickle"), None)).parent
    wait_for(lambda: b"complete" in (folder / "progress-0.json").read_bytes()
             if (folder / "progress-0.json").exists() else False)
    job = f"{Submission.load(folder).array_id}_0"
    time.sleep(2)  # into its next trial
    for signal in ("TERM", "USR2"):  # what a preemption sends: SIGTERM, then submitit's SIGUSR2
        subprocess.run(["scancel", f"--signal={signal}", job], check=True)
    out, err = command.communicate(timeout=HANG_S)
    assert command.returncode == 0, out + err
    history = subprocess.run(["sacct", "-n", "-X", "-P", "--duplicates", "-j", job, "-o", "State"],
                             capture_output=True, text=True).stdout.split()
    assert history[0] == "REQUEUED" and history[-1] == "COMPLETED"
    study, states = states_of(storage)
    assert states.count("COMPLETE") == 6 and "RUNNING" not in states
    killed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(killed) == 1  # the trial the worker was running, retried with its parameters
    retried = [t for t in study.trials if t.user_attrs.get("retry_of") == killed[0].number]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE" and retried[0].params == killed[0].params
    assert_one_parent_and_nothing_running(tmp_path, study.trials, monkeypatch)


def test_the_reference_check_on_slurm_passes_a_reference_recorded_here(cluster, tmp_path):
    real_data_file("perturbench_devel.h5ad")
    lines = ["norman_subset,simulation,additive,default,1-2,pearson_delta_de20,all",
             "norman_subset,simulation,mean,default,1,mse_de20,all"]
    reference = tmp_path / "reference.csv"
    reference.write_text(",".join(reference_check.COLUMNS) + "\n" + "".join(line + ",,,,,,\n" for line in lines))
    recorded = bench("check", "--reference", str(reference), "--update", "--force", cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    checked = bench("check", "--reference", str(reference), "--executor", "slurm", "--slurm",
                    f"folder={tmp_path / 'jobs'}", env={"COLUMNS": "200"}, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert re.search(r"submitted Slurm job \d+: 3 task\(s\)", checked.stdout)
    assert "all 2 line(s) within tolerance (largest change 0.0000)" in checked.stdout
    script = next((tmp_path / "jobs").glob("check-*/*.sh")).read_text()
    assert "export ATEN_CPU_CAPABILITY=avx2" in script and "export OMP_NUM_THREADS=1" in script


def test_bad_input_a_node_finds_cancels_the_array_in_one_line(cluster, tmp_path):
    real_data_file("perturbench_devel.h5ad")
    refused = bench("run", "--model", "mean,additive", "--dataset", "norman_subset", "--seeds", "1-2", "--no-track",
                    "--device", "cuda", "--executor", "slurm", "--slurm", "gpus_per_task=0", "--slurm",
                    f"folder={tmp_path / 'jobs'}", cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == ("error: --device cuda was asked for, but torch sees no CUDA GPU "
                                                        "here; use --device cpu or auto")
    array = Submission.load(next((tmp_path / "jobs").glob("run-*"))).array_id
    wait_for(lambda: not subprocess.run(["squeue", "-h", "-j", array], capture_output=True, text=True).stdout.strip(),
             60)


def held(token: str) -> list[str]:
    """Options that hold a job, should one be submitted, in the queue with ``token`` as its comment."""
    return ["--slurm", "sbatch=--hold", "--slurm", f"sbatch=--comment={token}"]


def queued(token: str) -> bool:
    return token in subprocess.run(["squeue", "-h", "-o", "%k"], capture_output=True, text=True).stdout.split()


@pytest.mark.parametrize("setting, refusal", [("partition=nope", "Invalid partition name specified"),
                                              ("account=nobody", "Invalid account")])
def test_slurm_refusing_the_request_is_quoted_in_one_line_and_nothing_is_submitted(cluster, tmp_path, setting, refusal):
    real_data_file("perturbench_devel.h5ad")
    token = f"refused-{tmp_path.name}"
    refused = bench("run", "--model", "mean", "--dataset", "norman_subset", "--executor", "slurm", "--slurm", setting,
                    "--slurm", f"folder={tmp_path / 'jobs'}", *held(token), env=store(tmp_path), cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: Slurm refused the request:") and refusal in line
    assert not queued(token) and not (tmp_path / "jobs").exists()


def test_a_dry_run_shows_the_request_and_warns_of_a_store_other_nodes_cannot_see(cluster, tmp_path):
    real_data_file("perturbench_devel.h5ad")
    token = f"dry-{tmp_path.name}"
    # this machine seen as a login node named login1 (a UTS namespace), so the cluster's one node is another
    command = " ".join([sys.executable, "-m", "bench", "run", *GRID, "--executor", "slurm", "--dry-run",
                        "--slurm", f"folder={tmp_path / 'jobs'}", "--slurm", "partition=debug", *held(token)])
    shown = subprocess.run(["unshare", "-u", "sh", "-c", f"hostname login1 && exec {command}"], capture_output=True,
                           text=True, env={**os.environ, **store(tmp_path)}, cwd=tmp_path, timeout=HANG_S)
    assert shown.returncode == 0, shown.stderr
    assert "#SBATCH --array=0-7%8" in shown.stdout and "#SBATCH --partition=debug" in shown.stdout
    assert "#SBATCH --signal=URG@90" in shown.stdout  # runs are not warned to checkpoint before the time limit
    assert "linear seed 1" in shown.stdout and "ceiling (split-half) simulation seed 2" in shown.stdout
    assert "sbatch --test-only`: sbatch: Job" in shown.stdout and "dry run: nothing submitted" in shown.stdout
    warning = shown.stderr.strip()
    assert warning.startswith("warning: the submission folder") and "and the tracking store" in warning
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]
    assert f"tasks may run on other nodes ({node})" in warning and "\n" not in warning
    assert not queued(token) and not (tmp_path / "jobs").exists()
