"""``--executor slurm`` at grid scale, on the single-node cluster of ``scripts/local_slurm.sh`` (``SLURM_CONF``).

- Submitting a 200-task grid (four baselines x 50 split seeds of norman_subset): the whole ``bench run
  --executor slurm --detach`` process, from its start to the job id, with and without tracking (tracking
  adds MLflow's import and the data ceilings of the 50 split seeds, 250 tasks), beside the same grid's
  ``--dry-run`` on this machine (loading and validating, no Slurm) as the reference. The array is held
  (``--slurm sbatch=--hold``) and cancelled: no task runs. ``extra_info`` holds seconds and the number of
  job arrays submitted (one sbatch call makes one).
- The waiting process: ``bench run`` of the same grid, waiting while its tasks pend and run, its CPU time
  over a window of ``WINDOW_S`` seconds as a share of one core, with plain lines (output to a file) and
  with rich bars (a terminal, through ``script``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

GRID = ["--model", "control,mean,additive,linear", "--dataset", "norman_subset", "--seeds", "1-50"]
WINDOW_S = 120.0
TICKS = os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module", autouse=True)
def cluster(tmp_path_factory):
    if not (os.environ.get("SLURM_CONF") and shutil.which("sbatch")):
        pytest.skip("no Slurm cluster: start one with scripts/local_slurm.sh start and export SLURM_CONF")
    bench(tmp_path_factory.mktemp("warm"), "run", *GRID, "--no-track", "--dry-run")  # seeds 6-50's splits cached


def bench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"})
    assert done.returncode == 0, done.stderr
    return done


def cancel(output: str) -> str:
    array = re.search(r"submitted Slurm job (\d+)", output)[1]
    subprocess.run(["scancel", array], check=True)
    return array


@pytest.mark.parametrize("track", ["--no-track", "--track"])
def test_submitting_a_200_task_grid(benchmark, tmp_path, track):
    submitted = []

    def submit():
        start = time.perf_counter()
        done = bench(tmp_path, "run", *GRID, track, "--executor", "slurm", "--detach", "--slurm", "sbatch=--hold",
                     "--slurm", f"folder={tmp_path / 'jobs'}")
        submitted.append((time.perf_counter() - start, cancel(done.stdout), done.stdout))

    benchmark.pedantic(submit, rounds=3, iterations=1)
    reference = []
    for _ in range(3):
        start = time.perf_counter()
        bench(tmp_path, "run", *GRID, track, "--dry-run")
        reference.append(time.perf_counter() - start)
    seconds = [s for s, _, _ in submitted]
    tasks = {int(re.search(r": (\d+) task\(s\)", out)[1]) for _, _, out in submitted}
    benchmark.extra_info.update({
        "submit_s": seconds, "dry_run_here_s": reference, "ratio": min(seconds) / min(reference),
        "arrays_per_submission": 1, "tasks": sorted(tasks), "load": os.getloadavg()[0]})
    assert len({array for _, array, _ in submitted}) == len(submitted)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def watcher_pid(parent: int) -> int:
    """The bench process itself: ``parent`` or, under ``script``, its descendant running bench."""
    for _ in range(100):
        found = subprocess.run(["pgrep", "-f", "-P", str(parent), "bench run"], capture_output=True, text=True)
        if found.stdout.strip():
            return watcher_pid(int(found.stdout.split()[0]))
        if "bench" in Path(f"/proc/{parent}/cmdline").read_text():
            return parent
        time.sleep(0.1)
    raise AssertionError("no bench process")


@pytest.mark.parametrize("terminal", [False, True])
def test_the_waiting_process_uses_little_cpu(benchmark, tmp_path, terminal):
    command = [sys.executable, "-m", "bench", "run", *GRID, "--no-track", "--executor", "slurm", "--slurm",
               f"folder={tmp_path / 'jobs'}"]
    if terminal:
        command = ["script", "-qfec", " ".join(command), "/dev/null"]
    log = tmp_path / "out.txt"
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                   env={**os.environ, "COLUMNS": "160", "LINES": "50"})
    try:
        deadline = time.monotonic() + 120
        while "submitted Slurm job" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        pid = watcher_pid(process.pid)
        time.sleep(5)  # past the submission itself

        def window():
            before, start = cpu_seconds(pid), time.monotonic()
            time.sleep(WINDOW_S)
            return (cpu_seconds(pid) - before) / (time.monotonic() - start)

        share = benchmark.pedantic(window, rounds=1, iterations=1)
        benchmark.extra_info.update({"cpu_share_of_one_core": share, "window_s": WINDOW_S, "terminal": terminal,
                                     "load": os.getloadavg()[0]})
    finally:
        cancel(log.read_text())
        process.terminate()
        process.wait(timeout=120)
