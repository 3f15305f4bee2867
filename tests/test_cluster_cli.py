"""The executor options refused in one line before anything runs, with or without Slurm on the machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import bench


def one_line_error(done) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize("options, expected", [
    (["--detach"], "error: --detach is for --executor slurm"),
    (["--slurm", "partition=gpu", "--slurm-parallel", "2"],
     "error: --slurm, --slurm-parallel are for --executor slurm"),
    (["--executor", "slurm", "--slurm-parallel", "0"], "Invalid value for '--slurm-parallel'"),
    (["--executor", "pbs"], "Invalid value for '--executor'"),
])
def test_executor_options_that_do_not_fit_are_refused(options, expected, tmp_path):
    line = one_line_error(bench("run", "--model", "mean", *options, cwd=tmp_path))
    assert expected in line


def test_slurm_without_its_commands_on_path_is_refused(tmp_path):
    no_slurm = {"PATH": str(Path(sys.executable).parent), "BENCH_CONFIG": str(tmp_path / "none.toml")}
    line = one_line_error(bench("run", "--model", "mean", "--executor", "slurm", env=no_slurm, cwd=tmp_path))
    assert line.startswith("error: --executor slurm needs Slurm's sbatch, srun, sacct on PATH")


def test_a_malformed_slurm_table_is_refused_naming_the_file(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[slurm]\ntime = 'tomorrow'\n")
    line = one_line_error(bench("sweep", "--model", "linear", "--executor", "slurm", env={"BENCH_CONFIG": str(config)},
                                cwd=tmp_path))
    assert line.startswith(f"error: {config}: slurm setting time = 'tomorrow' is not a Slurm time")


def test_workers_on_this_machine_are_separate_processes(tmp_path):
    line = one_line_error(bench("sweep", "--model", "linear", "--workers", "2", cwd=tmp_path))
    assert "--workers is for --executor slurm" in line and "start more `bench sweep` processes" in line


def test_jobs_of_a_folder_without_a_submission_is_refused(tmp_path):
    line = one_line_error(bench("jobs", str(tmp_path), cwd=tmp_path))
    assert line == (f"error: {tmp_path} holds no submission (submission.pickle); give the folder that "
                    "`--executor slurm` printed")
