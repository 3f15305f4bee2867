"""Trials per minute of ``bench sweep`` with 1 and 2 workers on one study (whole processes, SQLite).

    python scripts/measure_sweeps.py linear:20 cpa:6 --dataset norman_subset --preset fast

Each worker is a ``bench sweep ... --no-track`` process started at the same moment; the figure is the
study's finished trials (complete or pruned) over the wall time until every worker has exited, so it
includes each worker's start (dataset load, DE genes). The tuned cards go to a scratch card folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna


def measure(model: str, trials: int, workers: int, dataset: str, preset: str) -> tuple[float, list[str]]:
    scratch = Path(tempfile.mkdtemp(prefix="bench-sweeps-"))
    storage = f"sqlite:///{scratch / 'sweeps.db'}"
    command = [sys.executable, "-m", "bench", "sweep", "--model", model, "--dataset", dataset, "--preset", preset,
               "--trials", str(trials), "--storage", storage, "--study", "throughput", "--no-track"]
    env = {**os.environ, "BENCH_CARDS_DIR": str(scratch)}
    start = time.perf_counter()
    children = [subprocess.Popen(command, cwd=scratch, env=env, stdout=subprocess.DEVNULL) for _ in range(workers)]
    if any(child.wait() != 0 for child in children):
        raise SystemExit(f"a worker of {model} failed")
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name="throughput", storage=storage)
    states = [trial.state.name for trial in study.trials]
    shutil.rmtree(scratch)
    return wall, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model:trials, e.g. linear:20")
    parser.add_argument("--dataset", default="norman_subset")
    parser.add_argument("--preset", default="fast")
    args = parser.parse_args()
    print("| model | trials | workers | wall (s) | finished trials/min | states |\n|---|---|---|---|---|---|")
    for item in args.models:
        model, _, trials = item.partition(":")
        for workers in (1, 2):
            wall, states = measure(model, int(trials or 10), workers, args.dataset, args.preset)
            finished = states.count("COMPLETE") + states.count("PRUNED")
            summary = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
            print(f"| {model} | {trials} | {workers} | {wall:.1f} | {finished / wall * 60:.1f} | {summary} |")


if __name__ == "__main__":
    main()
