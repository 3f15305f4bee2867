"""What a dataset costs: ``bench run`` of the four baselines on simulated screens of 25,000 to 100,000
cells x 1,250 to 5,000 genes (300 conditions each, as ``synthetic_large``), in a fresh process.

For each size, ``extra_info`` holds the wall time and peak RSS (``VmHWM``) of the first run (DE genes
ranked and cached) and of a second run (cached), the size of the stored matrices, and the ratio of
the second run's wall time to that of the same run on the smallest size measured in the same session.
The README's scaling table comes from here. The screens are simulated once and kept in the cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from bench.core import paths

SIZES = [(25_000, 1_250), (50_000, 2_500), (100_000, 5_000)]
RUN = """
import atexit, json, sys
def report():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps({"peak_mb": int(line.split()[1]) / 1024}), file=sys.stderr)
atexit.register(report)
sys.argv = ["bench", "run", "--model", "control,mean,additive,linear", "--dataset", sys.argv[1],
            "--split", "simulation", "--seeds", "1", "--no-track"]
from bench.cli.app import main
main()
"""
MADE: dict[tuple[int, int], dict] = {}
SECONDS: dict[tuple[int, int], float] = {}


def _screen(cells: int, genes: int) -> tuple[str, dict]:
    """The simulated screen's file (made once) and the size of its matrices."""
    from bench.data.simulator import simulate

    path = paths.cache_dir() / "scaling" / f"{cells}x{genes}.h5ad"
    if not path.exists():
        adata = simulate(n_cells=cells, n_genes=genes, n_modules=50, n_singles=120, n_doubles=180, seed=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        adata.write_h5ad(path)
    if (cells, genes) not in MADE:
        import anndata as ad

        adata = ad.read_h5ad(path)
        size = {name: (M.data.nbytes + M.indices.nbytes + M.indptr.nbytes) / 2**20
                for name, M in (("X_mb", adata.X), ("counts_mb", adata.layers["counts"]))}
        MADE[cells, genes] = size
    return str(path), MADE[cells, genes]


def _run(path: str) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUN, path], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise AssertionError(done.stderr[-2000:])
    peak = json.loads([line for line in done.stderr.splitlines() if line.startswith("{")][-1])
    return {"seconds": seconds, **peak}


@pytest.mark.parametrize("cells, genes", SIZES, ids=[f"{c}x{g}" for c, g in SIZES])
def test_baselines_at_scale(benchmark, cells, genes):
    path, sizes = _screen(cells, genes)
    from bench.evaluation.de import TOP_DE

    for stale in (paths.cache_dir() / "de").glob(f"{cells}x{genes}-*-top{TOP_DE}.json"):
        stale.unlink()  # the first run ranks the DE genes again
    first = _run(path)
    cached = benchmark.pedantic(lambda: _run(path), rounds=1, iterations=1)
    SECONDS[cells, genes] = cached["seconds"]
    smallest = SECONDS[min(SECONDS)]
    benchmark.extra_info.update({
        "cells": cells, "genes": genes, **sizes, "first_seconds": first["seconds"], "first_peak_mb": first["peak_mb"],
        "cached_seconds": cached["seconds"], "cached_peak_mb": cached["peak_mb"],
        "cached_over_smallest": cached["seconds"] / smallest,
        "peak_over_stored_matrices": cached["peak_mb"] / (sizes["X_mb"] + sizes["counts_mb"]),
    })
