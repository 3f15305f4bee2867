"""Bad input to every command: exit code 2, one line on stderr, no traceback, nothing partial left.

Each case runs ``bench`` as a user would (a whole process, in an empty working directory) and then
checks that the folder holds no file the command left behind (a tracking database, a half-written table).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def bench(args: list[str], cwd, env: dict | None = None):
    full = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'runs.db'}", "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=full, cwd=cwd,
                          timeout=300)


def assert_one_line_error(out, message: str) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert len(lines) == 1, out.stderr
    assert message in lines[0], lines[0]


USAGE = [
    (["run", "--modle", "linear"], "No such option: --modle"),
    (["run", "--data", "x.h5ad"], "No such option: --data"),
    (["run"], "Missing option '--model'"),
    (["run", "--model", "linear", "--jobs", "x"], "'--jobs'"),
    (["frob"], "No such command 'frob'"),
    (["sweep", "--model", "linear", "--trials", "many"], "'--trials'"),
    (["data", "fecth", "norman"], "No such command 'fecth'"),
    (["run", "--model", ","], "--model names no model"),
    (["run", "--model", "linear", "--seeds", "5-1"], "seeds '5-1' count down"),
    (["run", "--model", "linear", "--seeds", "1-"], "seeds '1-' is not a seed list"),
    (["run", "--model", "linear", "--seeds", ","], "seeds ',' is not a seed list"),
    (["run", "--model", "lineer"], "unknown model 'lineer'; did you mean 'linear'"),
    (["run", "--model", "linear", "--jobs", "0"], "--jobs 0 must be at least 1"),
    (["run", "--model", "linear", "--split", "unseen_doubles"], "did you mean 'unseen_double'"),
    (["run", "--model", "linear", "--seeds", "one"], "seeds 'one' is not a seed list"),
    (["run", "--model", "linear", "--param", "lambda=1"], "no parameter 'lambda'; allowed:"),
    (["run", "--model", "linear", "--param", "ridge"], "must look like key=value"),
    (["run", "--model", "linear", "--param", "ridge=lots"], "parameter 'ridge' must be float"),
    (["run", "--model", "linear", "--preset", "fats"], "did you mean 'fast'"),
    (["run", "--model", "linear", "--device", "cuda", "--dataset", "synthetic"], "sees no CUDA GPU"),
    (["run", "--model", "linear", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "--model", "linear", "--metrics", "pearsn"], "unknown metric 'pearsn'"),
    (["run", "--model", "linear", "--dataset", "normann"], "did you mean 'norman'"),
    (["run", "--model", "linear", "--dataset", "absent.h5ad"], "dataset file absent.h5ad does not exist"),
    (["list", "modles"], "did you mean 'models'?"),
    (["sweep", "--model", "mean"], "model 'mean' has no [search_space]"),
    (["sweep", "--model", "linear", "--trials", "0"], "--trials must be at least 1"),
    (["sweep", "--model", "linear", "--metric", "pearson_dleta"], "did you mean 'pearson_delta'"),
    (["leaderboard"], "no tracked runs in sqlite:///"),
    (["leaderboard", "--dataset", "synthetic", "--metric", "pearsn"], "unknown metric 'pearsn'"),
    (["leaderboard", "--split", "unseen_doubles"], "did you mean 'unseen_double'"),
    (["check", "--reference", "absent.csv"], "no reference file absent.csv"),
    (["data", "fetch", "normann"], "did you mean 'norman'"),
    (["data", "import", "norman_subset", "absent.h5ad"], "absent.h5ad is not a file"),
]


@pytest.mark.parametrize("args, message", USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_are_one_line_with_exit_code_2(args, message, tmp_path):
    out = bench(args, tmp_path)
    assert_one_line_error(out, message)
    assert list(tmp_path.iterdir()) == []
