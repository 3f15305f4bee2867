"""``bench run --jobs N``: runs of several models and seeds in parallel worker processes (joblib, loky).

Each run is trained, scored and logged to MLflow inside its worker, so every run is tracked on its own
and a model's crash fails only its run (the runner turns it into a FAILED result). Workers share the
machine's cores: each gets ``cores // jobs`` torch and BLAS threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from bench.api import RunResult


def run_and_log(card, params: dict, prepared, split: str, seed: int, device: str, preset: str | None,
                track: bool, threads: int) -> RunResult:
    import torch
    from threadpoolctl import threadpool_limits

    from bench import runner
    from bench.knowledge import StoreGeneKnowledge

    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        result = runner.run(card, params, prepared, split, seed, device, StoreGeneKnowledge(), preset=preset)
    if track:
        from bench import tracking

        tracking.log_run(result)
    return result


def run_many(jobs: int, tasks: list[tuple], prepared, split: str, device: str, preset: str | None, track: bool,
             done: Callable[[RunResult], None]) -> list[RunResult]:
    """``tasks``: (card, params, seed) triples; ``done`` is called as each run finishes, in any order."""
    from joblib import Parallel, delayed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    calls = (delayed(run_and_log)(card, params, prepared, split, seed, device, preset, track, threads)
             for card, params, seed in tasks)
    results = []
    for result in Parallel(n_jobs=jobs, return_as="generator_unordered")(calls):
        done(result)
        results.append(result)
    return results
