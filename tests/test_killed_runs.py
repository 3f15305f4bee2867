"""A `bench run` stopped while it logs a run closes that run; one killed then (SIGKILL) leaves it RUNNING,
and the next command that opens the store closes it as FAILED "process gone". Whole processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import HANG_S, bench

from bench.workflows import tracking

pytestmark = pytest.mark.slow

# `bench run` as a user starts it, whose logging of its run stops at the artifacts until the test signals it: the
# only change is a pause in the middle of `tracking._write_artifacts` (a run is RUNNING only while being logged).
HELD_WHILE_LOGGING = textwrap.dedent(
    """
    import pathlib, sys, time
    from bench.cli.app import main
    from bench.workflows import tracking

    flag = pathlib.Path(sys.argv[1])

    def held(result, folder):
        flag.touch()
        time.sleep(3600)

    tracking._write_artifacts = held
    sys.argv = ["bench", "run", "--model", "mean", "--dataset", "synthetic"]
    main()
    """
)


def logging_run(tmp_path, workdir):
    """A `bench run` held while it logs its run, once it is there."""
    flag = tmp_path / "logging"
    process = subprocess.Popen([sys.executable, "-c", HELD_WHILE_LOGGING, str(flag)], cwd=workdir["cwd"],
                               env={**os.environ, **workdir["env"]}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + HANG_S  # the run trains first: seconds here, minutes on a loaded machine
    while not flag.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the run was never logged"
        time.sleep(0.1)
    return process


def only_run(workdir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", workdir["env"]["MLFLOW_TRACKING_URI"])
    runs = tracking.runs("synthetic").drop_duplicates("run_id")
    assert len(runs) == 1, runs
    return runs.iloc[0]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_run_stopped_while_it_is_logged_is_closed(tmp_path, workdir, monkeypatch, signum, code):
    process = logging_run(tmp_path, workdir)
    process.send_signal(signum)
    _, err = process.communicate(timeout=HANG_S)
    assert process.returncode == code, err
    run = only_run(workdir, monkeypatch)
    assert run["status"] == "FAILED" and "stopped while it was being logged" in run["error"]


def test_a_run_whose_process_was_killed_while_logging_is_closed_by_the_next_command(tmp_path, workdir, monkeypatch):
    process = logging_run(tmp_path, workdir)
    process.kill()
    process.communicate()
    assert only_run(workdir, monkeypatch)["status"] == tracking.UNFINISHED  # nothing could close it
    later = bench("run", "--model", "additive", "--dataset", "synthetic", **workdir)
    assert later.returncode == 0, later.stderr
    runs = tracking.runs("synthetic").drop_duplicates("run_id").set_index("model")
    assert runs.loc["mean", "status"] == "FAILED" and runs.loc["mean", "error"].startswith("process gone")
    assert runs.loc["additive", "status"] == "FINISHED"
