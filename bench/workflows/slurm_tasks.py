"""What one array task of ``--executor slurm`` runs on its node (``bench.workflows.slurm`` submits them): a run,
the data ceiling of a split seed, or a sweep worker.

Each task loads its dataset from the data store itself (``DatasetSource``), so nothing large travels
through the submission folder, computes on the CPUs Slurm gave it, and logs what it made to the
tracking store, so results survive the submitting process. A run goes through the same ``runner.run``
as a local run and writes its progress to the same kind of state file as a local worker.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from submitit.helpers import Checkpointable

from bench.core import devices
from bench.core import threads as thread_pools
from bench.core.api import RunResult
from bench.core.errors import BenchError
from bench.core.progress import StateFile
from bench.workflows import runner, tracking
from bench.workflows.runner import RunSpec

JOB_TAG = "slurm_job_id"  # the tag of a run logged by an array task: its Slurm job id (array_task)


@dataclass(frozen=True)
class DatasetSource:
    """How a task loads the dataset its submitting command loaded: a catalog name, or an .h5ad path
    (absolute) with the keys it was read with."""

    name: str
    perturbation_key: str | None = None
    control_value: str | None = None
    cell_type_key: str | None = None

    @classmethod
    def of(cls, given: str | None, loaded: str, *keys: str | None) -> DatasetSource:
        """The source of the dataset ``loaded`` (its name) from ``--dataset given``: a file by its absolute
        path (tasks may start in another folder), a catalog dataset (or the default) by name."""
        from bench.data.datasets import is_path

        return cls(str(Path(given).expanduser().resolve()) if given and is_path(given) else loaded, *keys)

    def prepared(self) -> runner.PreparedDataset:
        from bench.data.datasets import load_dataset

        return runner.PreparedDataset.of(load_dataset(
            self.name, perturbation_key=self.perturbation_key, control_value=self.control_value,
            cell_type_key=self.cell_type_key, counts=False))


def job_id() -> str:
    """This task's Slurm job id as sacct writes it (``<array>_<task>``)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


def _use_cpus(threads: int | None) -> None:
    """Compute on ``threads`` threads (``--threads``), else on the CPUs Slurm gave the task, else on the
    cores this process may use: never on a whole shared node's free cores."""
    given = threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0) or thread_pools.usable_cores()
    thread_pools.limit(given)


@dataclass
class RunTask:
    """One run of the grid: returns its result, less its predicted cells (the tracking store keeps them), or the
    ``BenchError`` that stopped it (bad input stops the whole array, as it stops local runs)."""

    spec: RunSpec
    source: DatasetSource
    track: bool
    progress: Path
    threads: int | None = None

    def __call__(self) -> RunResult | BenchError:
        _use_cpus(self.threads)
        from bench.data.knowledge import StoreGeneKnowledge

        try:
            prepared = self.source.prepared()
            spec = dataclasses.replace(self.spec, device=devices.resolve(self.spec.device))
            with StateFile(self.progress) as state:
                result = runner.run(spec, prepared, knowledge=StoreGeneKnowledge(), report=state.report,
                                    progress=state.phase)
        except BenchError as exc:
            return exc
        if self.track:
            tracking.log_run(result, extra_tags={JOB_TAG: job_id()})
        print(f"{result.model} {result.split} seed {result.seed}: {result.status.lower()}"
              + (f": {result.error}" if result.error else ""), flush=True)
        result.predicted_cells = result.control_cells = None
        return result


@dataclass
class CeilingTask:
    """The data ceiling of one split seed (``ceiling_runs``), tracked like a local run's."""

    source: DatasetSource
    split: str
    seed: int
    progress: Path

    def __call__(self) -> None:
        from bench.workflows import ceiling_runs

        _use_cpus(1)
        with StateFile(self.progress) as state:
            state.phase("data ceiling")
            run = ceiling_runs.result(self.source.prepared(), self.split, self.seed)
        if run is not None:
            tracking.log_run(run, extra_tags={JOB_TAG: job_id()})


class SweepWorker(Checkpointable):
    """One ``bench sweep`` worker on its node; its latest line (a trial's end) is its progress. Checkpointable:
    when Slurm preempts it or its time runs out, submitit requeues it and it rejoins the study; the trial
    it was running goes stale and is retried with the same parameters, as after any dead worker."""

    def __init__(self, spec, source: DatasetSource, track: bool, progress: Path, threads: int | None = None):
        self.spec, self.source, self.track, self.progress, self.threads = spec, source, track, progress, threads

    def __call__(self) -> int:
        from rich.console import Console

        from bench.core.progress import Display
        from bench.workflows import sweep

        _use_cpus(self.threads)
        spec = dataclasses.replace(self.spec, device=devices.resolve(self.spec.device))
        study = sweep.open_study(spec)
        prepared = self.source.prepared()
        console = Console(file=sys.stdout, force_terminal=False, width=160, markup=False)  # as the CLI's

        with Display(console, spec.trials, bars=False) as display, StateFile(self.progress) as state:
            def say(line: str) -> None:
                console.print(line, markup=False, highlight=False)
                state.phase(line)

            state.phase("joined the study")
            return sweep.run_worker(spec, study, prepared, track=self.track, display=display, say=say)
