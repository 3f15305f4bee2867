"""Import and run a library that changes process-wide state, inside a fence that restores it.

cell-gears, for one, seeds torch when imported (``torch.manual_seed(0)``), silences every warning, sets
scanpy's verbosity to 0, and its dependencies move Python's ``random`` state, set an environment variable
and reset the thread counts of torch's OpenMP pool (numba, through ``dcor``); it then draws from NumPy's
and torch's global generators, prints progress and writes files relative to the working directory.
``isolated`` imports such modules lazily, seeds the global generators from the run's seed, runs in a
scratch folder with their output discarded, warnings ignored and the caller's thread counts, and
afterwards restores the torch (CPU and CUDA), NumPy and ``random`` generator states, the warnings
filters, the working directory, the environment, the thread counts of torch and of the native thread
pools, scanpy's verbosity, stdout and stderr.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import random
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from types import ModuleType

import numpy as np
import scanpy as sc
import torch
from filelock import FileLock
from threadpoolctl import threadpool_info, threadpool_limits


def import_lock_path() -> Path:
    """The lock file that every process of this Python environment takes for :func:`locked_import`."""
    environment = hashlib.sha256(sys.prefix.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"bench-import-{environment}.lock"


def locked_import(module: str) -> ModuleType:
    """Import ``module`` holding the lock of :func:`import_lock_path`; for GEARS and anything that imports
    ``dcor``, whose import compiles numba functions into numba's on-disk cache, shared by every process of
    the environment. Two processes compiling them at once can load each other's half-written cache
    entries and abort (numba/numba#10128; seen as "Fatal Python error: Aborted" in ``llvmlite`` when two
    processes first imported GEARS on a fresh install), so every such import takes the lock."""
    with FileLock(import_lock_path()):
        return importlib.import_module(module)


def _restore_threads(torch_threads: int, pools: list[dict]) -> None:
    torch.set_num_threads(torch_threads)
    threadpool_limits(limits=pools)


def _restore_environment(saved: dict[str, str]) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@contextmanager
def isolated(seed: int, workdir: Path, *modules: str) -> Iterator[list[ModuleType]]:
    """Yield ``modules``, imported with :func:`locked_import`, with the global generators seeded from ``seed``
    and ``workdir`` as the working directory; restore the caller's process state on exit, also on errors."""
    cwd = os.getcwd()
    environment = dict(os.environ)
    threads, pools = torch.get_num_threads(), threadpool_info()
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    verbosity = sc.settings.verbosity
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    output = io.StringIO()
    with (
        torch.random.fork_rng(devices=cuda_devices),
        warnings.catch_warnings(),
        redirect_stdout(output),
        redirect_stderr(output),
    ):
        try:
            os.chdir(workdir)
            warnings.simplefilter("ignore")
            imported = [locked_import(module) for module in modules]
            _restore_threads(threads, pools)  # the block runs with the caller's thread counts, imported or not
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            yield imported
        finally:
            os.chdir(cwd)
            _restore_environment(environment)
            _restore_threads(threads, pools)
            np.random.set_state(numpy_state)
            random.setstate(python_state)
            sc.settings.verbosity = verbosity
