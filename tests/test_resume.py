"""``bench run --resume``: only the runs the tracking store lacks (same card, parameters, split file, metrics)."""

from __future__ import annotations

import pytest
from conftest import bench, real_data_file

from bench.workflows import tracking


@pytest.mark.slow
def test_resume_runs_only_the_runs_the_store_lacks(workdir, monkeypatch):
    real_data_file("perturbench_devel.h5ad")
    first = bench("run", "--model", "mean", "--dataset", "norman_subset", "--seeds", "1", **workdir)
    assert first.returncode == 0, first.stderr
    grid = ["run", "--model", "mean,additive", "--dataset", "norman_subset", "--seeds", "1-2", "--resume"]
    resumed = bench(*grid, **workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert "resume: 1 of 4 run(s) already finished in the tracking store, skipped" in resumed.stdout
    again = bench(*grid, "--dry-run", **workdir).stdout
    assert "resume: 4 of 4 run(s) already finished" in again and again.splitlines()[-1] == "dry run: nothing ran"
    changed = bench(*grid, "--param", "ridge=2", "--model", "linear", "--dry-run", **workdir)
    assert "resume: 0 of 2 run(s) already finished" in changed.stdout  # other parameters: other runs

    monkeypatch.setenv("MLFLOW_TRACKING_URI", workdir["env"]["MLFLOW_TRACKING_URI"])
    runs = tracking.runs("norman_subset").drop_duplicates("run_id")
    runs = runs[runs["model"] != "ceiling"]
    assert sorted(zip(runs["model"], runs["seed"])) == [("additive", 1), ("additive", 2), ("mean", 1), ("mean", 2)]
