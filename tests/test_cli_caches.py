"""Derived files and notices as a user meets them (whole ``bench`` processes): a corrupt cached split or
DE-gene cache is recomputed with one ``warning:`` line, a corrupt committed split is refused, a refused
command leaves no DE cache, library warnings do not precede a one-line error, and two ``bench run`` in
one folder track the data ceiling once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import HANG_S, bench, real_data_file

from bench.core import paths
from bench.data.loaders import repeated_names_allowed

pytestmark = pytest.mark.slow  # whole bench processes

RUN = ["run", "--model", "mean", "--dataset", "synthetic", "--no-track"]


@pytest.fixture
def user(tmp_path):
    """A working folder with its own cache and tracking store, for ``bench(*args, **user)``."""
    return {"cwd": tmp_path, "env": {"BENCH_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200",
                                     "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'runs.db'}"}}


def stderr_lines(out) -> list[str]:
    return out.stderr.strip().splitlines()


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]"], ids=["truncated", "binary", "a list"])
def test_a_corrupt_cached_split_is_recomputed_with_a_one_line_warning(user, content):
    assert bench(*RUN, **user).returncode == 0
    path = user["cwd"] / "cache" / "splits" / "synthetic" / "simulation-seed1.json"
    good = path.read_bytes()
    path.write_bytes(content)
    out = bench(*RUN, **user)
    assert out.returncode == 0, out.stderr
    [line] = stderr_lines(out)
    assert line.startswith(f"warning: cached split {path} is not a valid split file (") and line.endswith("); recomputing it"), line
    assert path.read_bytes() == good


def test_a_corrupt_committed_split_is_refused_and_never_regenerated(user):
    real_data_file("perturbench_devel.h5ad")
    catalog = user["cwd"] / "catalog"
    shutil.copytree(paths.catalog_dir(), catalog)
    path = catalog / "splits" / "norman_subset" / "simulation-seed1.json"
    path.write_text("{not json")
    out = bench("run", "--model", "mean", "--dataset", "norman_subset", "--no-track", cwd=user["cwd"],
                env={**user["env"], "BENCH_CATALOG": str(catalog)})
    assert out.returncode == 2, out.stderr
    [line] = stderr_lines(out)
    assert line.startswith(f"error: committed split {path} is not a valid split file ("), line
    assert "restore it" in line and "delete it" not in line, line
    assert path.read_text() == "{not json"
    assert not (user["cwd"] / "cache" / "splits").exists()


def test_a_corrupt_de_cache_is_one_warning_line(user):
    assert bench(*RUN, **user).returncode == 0
    [path] = (user["cwd"] / "cache" / "de").glob("synthetic-*.json")
    path.write_text("{not json")
    out = bench(*RUN, **user)
    assert out.returncode == 0, out.stderr
    [line] = stderr_lines(out)
    assert line.startswith(f"warning: DE gene cache {path} is unusable (") and line.endswith("); recomputing it"), line


def one_control_cell(path) -> None:
    """An h5ad whose only cell type has a single control cell: no split can be made of it."""
    obs = pd.DataFrame({"condition": ["ctrl"] + ["A"] * 9 + ["B"] * 10}, index=[f"c{i}" for i in range(20)])
    X = np.random.default_rng(0).random((20, 6)).astype(np.float32)
    ad.AnnData(X, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(6)])).write_h5ad(path)


def test_a_refused_split_leaves_no_de_cache(user):
    one_control_cell(user["cwd"] / "few.h5ad")
    out = bench("run", "--model", "mean", "--dataset", "few.h5ad", "--no-track", **user)
    assert out.returncode == 2, out.stderr
    assert stderr_lines(out) == ["error: cell type 'default' has 1 control cell(s); a split needs at least 2"]
    assert not (user["cwd"] / "cache" / "de").exists() or not any((user["cwd"] / "cache" / "de").iterdir())


def test_predictions_with_repeated_names_give_only_the_one_line_error(user):
    obs = pd.DataFrame({"condition": ["A", "A"]}, index=["p", "p"])
    with repeated_names_allowed():
        predictions = ad.AnnData(np.zeros((2, 3), dtype=np.float32), obs=obs, var=pd.DataFrame(index=["a", "a", "b"]))
    predictions.write_h5ad(user["cwd"] / "pred.h5ad")
    out = bench("score", "--dataset", "synthetic", "--predictions", "pred.h5ad", "--name", "x", "--no-track", **user)
    assert out.returncode == 2, out.stderr
    [line] = stderr_lines(out)
    assert line.startswith("error: pred.h5ad: var_names must be the dataset's"), line


def test_a_catalog_folder_that_does_not_exist_is_named(user):
    missing = user["cwd"] / "nonexistent"
    out = bench("run", "--model", "mean", "--dataset", "synthetic", "--no-track", cwd=user["cwd"],
                env={**user["env"], "BENCH_CATALOG": str(missing)})
    assert out.returncode == 2, out.stderr
    assert stderr_lines(out) == [f"error: BENCH_CATALOG={missing} is not a folder; point it at a catalog "
                                 "(with models/, datasets/, splits/) or unset it"]


def test_two_runs_in_one_folder_at_once_track_each_ceiling_once(user):
    import mlflow

    args = [sys.executable, "-m", "bench", "run", "--model", "mean", "--dataset", "synthetic", "--seeds", "1-3"]
    env = {**os.environ, **user["env"]}
    assert bench(*RUN, **user).returncode == 0  # the simulated dataset, cached before the two start
    both = [subprocess.Popen(args, cwd=user["cwd"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    for process in both:
        _, err = process.communicate(timeout=HANG_S)
        assert process.returncode == 0, err
    mlflow.set_tracking_uri(user["env"]["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["bench/synthetic"], filter_string="tags.model = 'ceiling'")
    assert sorted(runs["tags.seed"]) == ["1", "2", "3"]
