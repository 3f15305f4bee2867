"""Runs the tracking store could not take (it went away after training): kept in a local folder until
``bench import-runs`` logs them, so no finished run is lost to a store outage.

Each run is one pickle of what ``tracking.log_run`` was given (the result with its metrics, per-perturbation
table and predictions; the sweep parent and extra tags), written atomically; importing removes it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from bench.core import atomic
from bench.core.api import RunResult
from bench.core.errors import BenchError

FOLDER = "unlogged-runs"  # in the working directory of the process that ran
SUFFIX = ".run.pickle"


def save(result: RunResult, parent_run_id: str | None, extra_tags: dict | None) -> Path:
    """Write the run into ``FOLDER``; return its file."""
    name = f"{result.model}-{result.split}-seed{result.seed}-{result.ended_ms or result.started_ms}{SUFFIX}"
    path = Path.cwd() / FOLDER / name.replace("/", "_")
    with atomic.replacing(path) as temporary:
        temporary.write_bytes(pickle.dumps({"result": result, "parent_run_id": parent_run_id,
                                            "extra_tags": extra_tags}))
    return path


def files(where: Path) -> list[Path]:
    """The saved runs in folder ``where``, or ``where`` itself when it is one."""
    if where.is_file() and where.name.endswith(SUFFIX):
        return [where]
    if not where.is_dir():
        raise BenchError(f"{where} is neither a folder of unlogged runs nor one (*{SUFFIX}); give the folder "
                         f"named when the store failed (e.g. ./{FOLDER})")
    return sorted(where.glob(f"*{SUFFIX}"))


def load(path: Path) -> dict:
    try:
        record = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError) as exc:
        raise BenchError(f"cannot read the unlogged run {path} ({type(exc).__name__}: {exc}); it was not "
                         "written by bench run, or by another version of bench") from None
    if not isinstance(record, dict) or not isinstance(record.get("result"), RunResult):
        raise BenchError(f"{path} is not an unlogged run of bench")
    return record
