"""Thread counts: a run computes on the free cores only, and every thread pool of its process obeys."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.core import threads


def test_free_cores_leave_out_the_busy_ones(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    for busy, free in ((0.0, 8), (2.6, 5), (7.9, 1), (30.0, 1)):
        monkeypatch.setattr(threads, "busy_cores", lambda busy=busy: busy)
        assert threads.free_cores() == free


def test_busy_cores_count_the_cores_others_keep_busy(monkeypatch):
    """From two readings of /proc/stat: 4 cores, 300 ticks of which 100 idle and 20 iowait: 2.4 busy cores."""
    readings = iter([[100, 0, 50, 1000, 10, 0, 0], [250, 0, 80, 1100, 30, 0, 0]])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(readings))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.busy_cores(seconds=0) == pytest.approx(2.4)


def test_a_cgroup_quota_bounds_the_usable_cores(monkeypatch, tmp_path):
    quota = tmp_path / "cpu.max"
    real_path = threads.Path
    monkeypatch.setattr(threads, "Path", lambda text: quota if text == "/sys/fs/cgroup/cpu.max" else real_path(text))
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(16)))
    quota.write_text("150000 100000\n")
    assert threads.usable_cores() == 1
    quota.write_text("max 100000\n")
    assert threads.usable_cores() == 16


PROBE = """
import json, numpy, torch
from threadpoolctl import threadpool_info
from bench.core import threads
threads.limit(1)
import bench.adapters.kit.torch_runtime
pools = [pool["num_threads"] for pool in threadpool_info()]
print(json.dumps({"torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads(), "pools": pools}))
"""


@pytest.mark.skipif(threads.usable_cores() < 2, reason="needs 2 cores to tell 1 thread from the default")
def test_limit_holds_torch_and_blas_pools_to_the_count():
    env = {name: value for name, value in os.environ.items() if name not in threads.VARIABLES}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["torch"] == 1 and figures["interop"] == 1
    assert figures["pools"] and set(figures["pools"]) == {1}
