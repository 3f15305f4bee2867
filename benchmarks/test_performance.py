"""Speed and memory at Norman scale (about 100,000 cells x 5,000 genes, 300 conditions).

Targets (issue "Foundation"): load plus pseudobulk under 10 s with peak memory under 2x the matrix's
sparse size; all metrics for 300 perturbations under 1 s; each baseline's fit plus predict under 30 s.
Figures go to ``benchmark.extra_info`` (``--benchmark-json`` keeps them); nothing here asserts a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from bench import metrics, registry, splits
from bench.api import PredictQuery, TrainData

LOAD_SCRIPT = """
import json, time
import bench.data.datasets, bench.data.pseudobulk

def status_mb(field):  # VmRSS: now; VmHWM: peak of this process image (ru_maxrss survives exec)
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) / 1024

before = status_mb("VmRSS")
start = time.perf_counter()
dataset = bench.data.datasets.load_dataset("synthetic_large")
bulk = bench.data.pseudobulk.pseudobulk(dataset.adata)
seconds = time.perf_counter() - start
def sparse_mb(M):
    return (M.data.nbytes + M.indices.nbytes + M.indptr.nbytes) / 2**20

X = dataset.adata.X
layers = sum(sparse_mb(M) for M in dataset.adata.layers.values())
peak_mb = status_mb("VmHWM")
print(json.dumps({"seconds": seconds, "sparse_mb": sparse_mb(X), "layers_sparse_mb": layers, "peak_mb": peak_mb,
                  "import_mb": before, "shape": list(X.shape), "groups": len(bulk)}))
"""


def test_load_and_pseudobulk_whole_process(benchmark, norman_scale):
    """A fresh process loads the cached dataset and computes the pseudobulk."""

    def child():
        out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    figures = benchmark.pedantic(child, rounds=3, iterations=1)
    loaded = figures["peak_mb"] - figures["import_mb"]
    figures["peak_over_X"] = loaded / figures["sparse_mb"]
    figures["peak_over_X_and_layers"] = loaded / (figures["sparse_mb"] + figures["layers_sparse_mb"])
    benchmark.extra_info.update(figures)


def evaluation_input(n=300, genes=5000, seed=0):
    rng = np.random.default_rng(seed)
    observed = rng.gamma(1.0, 1.0, (n, genes))
    control = np.tile(rng.gamma(1.0, 1.0, genes), (n, 1))
    predicted = observed + rng.normal(0, 0.3, (n, genes))
    return metrics.EvaluationInput(
        predicted=predicted,
        observed=observed,
        control=control,
        perturbation_mean=control + 0.1,
        de20=np.stack([rng.choice(genes, 20, replace=False) for _ in range(n)]),
        top_expressed=np.tile(metrics.top_expressed(control[0]), (n, 1)),
        label_gene=rng.integers(-1, genes, n),
        group=np.zeros(n),
    )


def test_all_metrics_300_perturbations(benchmark):
    data = evaluation_input()
    benchmark(metrics.evaluate, data)


def test_gears_inference_same_predictions(benchmark):
    """GEARS' ``compute_metrics`` (mse, pearson, and their DE20 forms only) on the same predictions,
    one row per perturbation: compare its time with ``test_all_metrics_300_perturbations``."""
    with warnings.catch_warnings():
        from gears.inference import compute_metrics
    data = evaluation_input()
    rows = np.arange(len(data.predicted))
    results = {
        "pert_cat": np.array([f"P{i}" for i in rows]),
        "pred": data.predicted,
        "truth": data.observed,
        "pred_de": np.take_along_axis(data.predicted, data.de20, axis=1),
        "truth_de": np.take_along_axis(data.observed, data.de20, axis=1),
    }
    benchmark(compute_metrics, results)


@pytest.fixture(scope="module")
def norman_scale_split(norman_scale):
    split = splits.make(norman_scale.adata, "simulation", 1, norman_scale.name, norman_scale.sha256)
    return splits.apply(split, norman_scale.adata)


@pytest.mark.parametrize("name", ["control", "mean", "additive", "linear"])
def test_baseline_fit_predict(benchmark, norman_scale_split, name):
    data = norman_scale_split
    card = registry.find_card(name)
    train = TrainData(cells=data.train, val=data.val, seed=1)
    conditions = sorted(set(data.test.obs["condition"]))
    cell_type = str(data.test.obs["cell_type"].iloc[0])
    control = data.query_control[data.query_control.obs["cell_type"] == cell_type]
    query = PredictQuery(conditions=conditions, control=control, cell_type=cell_type)

    def fit_predict():
        model = registry.build(card, registry.resolve_params(card))
        model.fit(train)
        return model.predict(query)

    benchmark.pedantic(fit_predict, rounds=3, iterations=1)
