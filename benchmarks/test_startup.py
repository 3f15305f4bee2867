"""Start-up, as whole processes: ``bench --help``, ``bench list`` and a mistyped option (targets: 0.5 s, 1 s,
0.5 s on 2 quiet cores). With ``BENCH_REFERENCE_TREE`` set to a checkout of other code (``git worktree add
/tmp/ref <commit>``), the same command from that tree runs alternately in the same rounds, and
``extra_info`` holds both medians and their ratio, so a loaded machine slows both alike."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMMANDS = {"help": ["--help"], "list": ["list"], "mistyped option": ["run", "--modle", "linear"]}
ROUNDS = 7


def seconds(args: list[str], tree: str | None, cwd: Path) -> float:
    """One whole ``python -m bench`` process, in ``cwd`` (not the checkout, whose ``bench/`` would shadow
    ``tree``)."""
    env = {**os.environ, "PYTHONPATH": tree} if tree else os.environ
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, env=env, cwd=cwd)
    return time.perf_counter() - start


@pytest.mark.parametrize("name", COMMANDS)
def test_start_up(benchmark, name, tmp_path):
    args, reference = COMMANDS[name], os.environ.get("BENCH_REFERENCE_TREE")
    theirs = []

    def before_each_round():  # not timed: the reference tree's process, alternating with ours
        if reference:
            theirs.append(seconds(args, reference, tmp_path))
        return (args, None, tmp_path), {}

    benchmark.pedantic(seconds, setup=before_each_round, rounds=ROUNDS, warmup_rounds=1)
    if theirs:
        ours, reference_median = benchmark.stats.stats.median, statistics.median(theirs[1:])
        benchmark.extra_info.update(reference_median_s=reference_median, median_s=ours, ratio=ours / reference_median)
