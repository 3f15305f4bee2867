"""What a model's worker script uses to talk to bench, from inside the model's own environment.

Standard library only: the worker runs in an environment without bench, whose runner puts this folder on
the worker's path (``import bench_worker``). The runner (``kit.environment_adapter``) starts
``python worker.py job.json``; the job names the task (``fit`` or ``predict``), the run's seed, threads and
device, the card's parameters and the files to read and write. The worker says where it is with
``progress`` and ``report`` (one JSON object per line on stdout; anything else it prints goes to the log),
and ``main`` turns an exception into one line for the user (the traceback goes to the log).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable

PARENT_POLL_S = 1.0


def _send(message: dict) -> None:
    sys.__stdout__.write(json.dumps(message) + "\n")
    sys.__stdout__.flush()


def progress(phase: str, done: int = 0, total: int | None = None) -> None:
    """Where a long task is, e.g. ``progress("training", 120, 1000)``: a bar or a log line in bench."""
    _send({"progress": [phase, done, total]})


def report(step: int, value: float) -> None:
    """A validation value (higher is better) at a training step, for bench's progress and sweep pruning."""
    _send({"report": [step, float(value)]})


def diagnostic(name: str, value: float) -> None:
    """A value the model records about itself, logged with the run as ``diagnostic/<name>``."""
    _send({"diagnostic": [name, float(value)]})


def seed_everything(seed: int) -> None:
    """Seed Python's and NumPy's global generators (packages that draw from them then repeat)."""
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass


def _end_with_parent(parent: int) -> None:
    """End this process when bench's process is gone (killed, even with SIGKILL): a worker never outlives
    the run that started it."""
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)


def main(tasks: dict[str, Callable[[dict], None]]) -> None:
    """Run ``tasks[job['task']](job)`` for the job file named on the command line; an exception becomes
    one ``error`` line (its last line of text) and exit code 3, its traceback on stderr (the log)."""
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True).start()
    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    sys.stdout = sys.stderr  # the package's own prints go to the log, not into the protocol
    seed_everything(job["seed"])
    try:
        if job["task"] not in tasks:
            raise LookupError(f"the worker script has no '{job['task']}' task: bench_worker.main needs "
                              "{'fit': ..., 'predict': ...}")
        tasks[job["task"]](job)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one line for the user
        traceback.print_exc()
        text = traceback.format_exception_only(exc)[-1].strip()
        _send({"error": text})
        sys.exit(3)
