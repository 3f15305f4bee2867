"""How many threads a run computes on, so that runs never oversubscribe the cores.

A process that starts more compute threads than there are idle cores slows down far more than the
missing cores explain: threads that wait for each other at every parallel region are descheduled in
turn (a scBIG autoencoder step ran 5.7x slower with 2 torch threads on 2 busy cores than with 1).
``bench run`` therefore gives each run the cores no other process is busy on (``free_cores``), split
between ``--jobs`` workers, and ``limit`` holds every thread pool of the process to that count: BLAS
and OpenMP pools through threadpoolctl (and the environment, for libraries not loaded yet, torch
included), torch's intra-op pool, and its inter-op pool (used only by TorchScript's fork, so one
thread). The pools take turns: numpy's BLAS and torch's kernels do not compute at the same time.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

SAMPLE_S = 0.25
VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # numba's kernels here are serial


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, within a cgroup CPU quota if one is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores
    return cores if quota == "max" else max(1, min(cores, math.floor(int(quota) / int(period))))


def busy_cores(seconds: float = SAMPLE_S) -> float:
    """How many cores the machine's processes kept busy over the next ``seconds`` (this one sleeps
    meanwhile), from ``/proc/stat``; elsewhere the one-minute load average. A sample, not the load
    average, where possible: the load average still counts work that ended up to a minute ago."""
    try:
        before = _cpu_times()
        time.sleep(seconds)
        after = _cpu_times()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    total = sum(after) - sum(before)
    idle = (after[3] + after[4]) - (before[3] + before[4])  # idle and iowait
    cores = os.cpu_count() or 1
    return cores * (1.0 - idle / total) if total > 0 else 0.0


def _cpu_times() -> list[int]:
    """The machine's CPU time counters (user, nice, system, idle, iowait, ...) from ``/proc/stat``."""
    with open("/proc/stat") as handle:
        return [int(value) for value in handle.readline().split()[1:]]


def free_cores(busy: float | None = None) -> int:
    """Usable cores less those other processes keep busy (``busy``, else sampled now), at least 1."""
    usable = usable_cores()
    return max(1, min(usable, usable - round(busy_cores() if busy is None else busy)))


def slowdown(busy: float, jobs: int, threads: int) -> float:
    """How much longer than on idle cores ``jobs`` runs of ``threads`` threads take beside ``busy`` cores of
    other work, when every busy thread gets an equal share of the usable cores (1 when they all fit)."""
    return max(1.0, (busy + jobs * threads) / usable_cores())


def environment(threads: int) -> dict[str, str]:
    """The variables that size the thread pools of libraries loaded after they are set."""
    return {name: str(threads) for name in VARIABLES}


def limit(threads: int) -> None:
    """Hold this process's thread pools to ``threads``: loaded BLAS/OpenMP pools now, torch's if it is
    loaded, and those of libraries loaded later through the environment (``torch_runtime`` sizes
    torch's inter-op pool when it loads torch)."""
    from threadpoolctl import threadpool_limits

    os.environ.update(environment(threads))
    threadpool_limits(limits=threads)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        set_interop(torch, 1)


def set_interop(torch, threads: int) -> None:
    """torch's inter-op pool size; torch refuses a change once the pool has started, then it stays."""
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass
