"""Wall time and peak memory of whole ``bench run`` processes, one model per process.

    python scripts/measure_models.py cpa,latent_additive,additive,linear --dataset norman_subset --seeds 1-3

Each model runs as its own ``bench run ... --no-track`` child (so its peak resident memory is its own,
read from ``os.wait4``); its summary table is printed as the CLI prints it, followed by a Markdown table
of wall time and peak memory per model. ``--bench-args "--param threads=1"`` passes more to ``bench run``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time


def measure(model: str, dataset: str, split: str, seeds: str, extra: list[str]) -> tuple[float, float, str]:
    """``(wall seconds, peak RSS in MB, output)`` of one ``bench run`` child process."""
    bench = shutil.which("bench") or os.path.join(os.path.dirname(sys.executable), "bench")
    command = [bench, "run", "--model", model, "--split", split, "--dataset", dataset, "--seeds", seeds,
               "--no-track", *extra]
    env = {**os.environ, "COLUMNS": "200"}
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench run --model {model} failed:\n{output}")
    return wall, usage.ru_maxrss / 1024.0, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", help="comma-separated model cards")
    parser.add_argument("--dataset", default="norman_subset")
    parser.add_argument("--split", default="simulation")
    parser.add_argument("--seeds", default="1-3")
    parser.add_argument("--bench-args", default="", help="more arguments for bench run, as one string")
    args = parser.parse_args()
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        wall, peak, output = measure(model, args.dataset, args.split, args.seeds, shlex.split(args.bench_args))
        print(output)
        rows.append((model, wall, peak))
    print(f"| model | wall time, {args.seeds} seeds (s) | peak RSS (MB) |\n|---|---:|---:|")
    for model, wall, peak in rows:
        print(f"| {model} | {wall:.1f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
