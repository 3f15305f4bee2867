"""A worker for tests of ``EnvironmentAdapter``: it predicts every condition as the training cells' mean
shifted by ``shift``, and says what it was given (threads, seed, environment) as diagnostics."""

import importlib.util
import os
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import bench_worker


def fit(job: dict) -> None:
    if job["params"]["fail"]:
        raise RuntimeError("the model refused its data")
    if job["params"]["sleep"]:
        Path("worker.pid").write_text(str(os.getpid()))
        time.sleep(job["params"]["sleep"])
    cells = ad.read_h5ad(job["train"])
    Path(job["model"]).mkdir()
    np.save(Path(job["model"]) / "mean.npy", np.asarray(cells.X.mean(axis=0)).ravel())
    for step in range(1, 4):
        bench_worker.progress("training", step, 3)
        bench_worker.report(step, -1.0 / step)
    bench_worker.diagnostic("threads", float(os.environ["OMP_NUM_THREADS"]))
    bench_worker.diagnostic("seed_draw", float(np.random.random()))
    bench_worker.diagnostic("sees_bench", float(importlib.util.find_spec("bench") is not None))
    print("a package's own chatter")


def predict(job: dict) -> None:
    mean = np.load(Path(job["model"]) / "mean.npy") + job["params"]["shift"]
    control = ad.read_h5ad(job["control"])
    rows = np.tile(mean, (len(job["conditions"]) * 2, 1))
    obs = pd.DataFrame({"condition": np.repeat(job["conditions"], 2)}, index=[str(i) for i in range(len(rows))])
    ad.AnnData(X=rows, obs=obs, var=pd.DataFrame(index=control.var_names)).write_h5ad(job["output"])


bench_worker.main({"fit": fit, "predict": predict})
