"""Runs in worker processes (``bench run --jobs N``, ``bench check``, through ``execution.execute``): one
process per run, at most ``jobs`` at a time.

A worker is a fresh ``python -m bench.workflows.worker`` process, so a run's environment (thread counts, the
numeric profile of ``bench check``) is set before numpy and torch load, its peak memory is its own,
and a worker killed by a signal (the out-of-memory killer) takes only its own run down: that run
becomes a FAILED result saying so, and the others go on. Tasks and results travel as pickle files in
a private temporary folder; the parent, not the workers, hands each result to ``done`` (e.g. to log
it), so one process writes the tracking store. A worker writes where its run is (phase, steps) to a
small JSON file that the parent reads as it polls and hands to ``progress``.

Workers end with the parent, however it ends (``worker.end_with``). The folder, named after the parent's pid, is
removed as the parent ends (the CLI turns SIGTERM and SIGHUP into an exit, as SIGINT is); one that a parent killed
by SIGKILL left behind is removed by the next start.

Not joblib (loky), which ran ``--jobs`` before: a worker killed there breaks the whole executor (every
run in flight ends in ``TerminatedWorkerError``, and which run was killed is unknown), and its workers
are reused, so a run's environment cannot be set before numpy and torch load.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.core.api import RunResult, now_ms
from bench.core.errors import BenchError
from bench.core.processes import alive
from bench.core.threads import environment as threads_environment
from bench.workflows import runner

POLL_S = 0.2
PREFIX = "bench-workers-"


def _exit_reason(code: int, stderr: Path) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker process killed by {name}{hint}"
    lines = [line for line in stderr.read_text(errors="replace").splitlines() if line.strip()]
    return f"worker process exited with code {code}" + (f": {lines[-1].strip()}" if lines else "")


def _failed(spec: runner.RunSpec, prepared, reason: str, started_ms: int) -> RunResult:
    """A FAILED result for a worker that wrote none, timed from its start (``started_ms``) until now."""
    result, _ = runner.new_result(spec, prepared)
    result.status, result.error = "FAILED", reason
    result.started_ms, result.ended_ms = started_ms, now_ms()
    result.wall_time_s = (result.ended_ms - started_ms) / 1000
    return result


def run_many(specs: list[runner.RunSpec], datasets: dict, jobs: int, threads: int,
             done: Callable[[int, RunResult], None], environment: dict[str, str] | None = None,
             progress: Callable[[int, dict | None], None] | None = None) -> None:
    """Run ``specs`` (``datasets``: name -> PreparedDataset) with ``threads`` threads each and ``environment``
    set in every worker; ``done(i, result)`` is called in this process as the run of ``specs[i]`` ends, in
    any order; ``progress(i, None)`` as its worker starts, ``progress(i, state)`` as its state changes
    (``state``: ``phase``, ``done``, ``total``, ``note``). Bad input found by a worker (a ``BenchError``)
    stops every worker and is raised here."""
    progress = progress or (lambda number, state: None)
    env = {**os.environ, **threads_environment(threads), **(environment or {})}
    _remove_abandoned()
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-") as folder:
        root = Path(folder)
        data_files = {key: root / f"dataset-{i}.pickle" for i, key in enumerate(datasets)}
        for key, path in data_files.items():
            path.write_bytes(pickle.dumps(datasets[key], protocol=pickle.HIGHEST_PROTOCOL))
        waiting = list(enumerate(specs))
        running: dict[int, subprocess.Popen] = {}
        seen: dict[int, bytes] = {}
        started: dict[int, int] = {}
        try:
            while waiting or running:
                while waiting and len(running) < jobs:
                    number, spec = waiting.pop(0)
                    started[number] = now_ms()
                    running[number] = _start(root, number, (spec, data_files[spec.dataset], threads), env)
                    progress(number, None)
                for number in running:
                    state = _state(root / f"progress-{number}.json", seen.get(number))
                    if state is not None:
                        seen[number] = state
                        progress(number, json.loads(state))
                finished = [number for number, process in running.items() if process.poll() is not None]
                if not finished:
                    time.sleep(POLL_S)
                for number in finished:
                    result = _collect(root, number, running.pop(number).returncode, specs[number], datasets,
                                      started[number])
                    done(number, result)
        finally:
            for process in running.values():
                process.kill()
                process.wait()


def _remove_abandoned() -> None:
    """Remove the worker folders whose parent is gone (``PREFIX``, its pid, ``-``...); never one whose parent runs."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        owner = folder.name.removeprefix(PREFIX).partition("-")[0]
        if owner.isdigit() and not alive(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)


def _state(path: Path, last: bytes | None) -> bytes | None:
    """The worker's progress file when it changed since ``last`` (None when unchanged or not written yet)."""
    try:
        state = path.read_bytes()
    except FileNotFoundError:
        return None
    return state if state and state != last else None


def _start(root: Path, number: int, payload: tuple, env: dict[str, str]) -> subprocess.Popen:
    task_file = root / f"task-{number}.pickle"
    task_file.write_bytes(pickle.dumps(payload))
    files = [str(task_file), str(root / f"result-{number}.pickle"), str(root / f"progress-{number}.json")]
    with open(root / f"stderr-{number}.txt", "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "bench.workflows.worker", str(os.getpid()), *files],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)


def _collect(root: Path, number: int, code: int, spec: runner.RunSpec, datasets: dict, started_ms: int) -> RunResult:
    """The result a worker wrote, or a FAILED one saying why it wrote none."""
    path = root / f"result-{number}.pickle"
    if code == 0 and path.exists():
        outcome = pickle.loads(path.read_bytes())
        if isinstance(outcome, BenchError):
            raise outcome
        return outcome
    return _failed(spec, datasets[spec.dataset], _exit_reason(code, root / f"stderr-{number}.txt"), started_ms)
