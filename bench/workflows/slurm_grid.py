"""What each command submits to Slurm (``bench.workflows.slurm``): the runs of a ``bench run`` grid and the data
ceilings the tracking store lacks, the runs of a reference check, the workers of a sweep."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.workflows import ceiling_runs, runner
from bench.workflows.runner import RunSpec
from bench.workflows.slurm import Submission, Task, progress_path
from bench.workflows.slurm_tasks import CeilingTask, DatasetSource, RunTask, SweepWorker


def _run_tasks(specs: list[RunSpec], datasets: dict, sources: dict[str, DatasetSource], folder: Path, track: bool,
               threads: int | None, label: Callable[[RunSpec], str]) -> list[Task]:
    """A task per run; each carries the FAILED run to record if Slurm ends it without a result."""
    tasks, cut = [], {}
    for spec in specs:
        key = (spec.dataset, spec.split, spec.seed)  # the models of one split seed share its split
        failed, cut[key] = runner.new_result(spec, datasets[spec.dataset], cut.get(key))
        call = RunTask(spec, sources[spec.dataset], track, progress_path(folder, len(tasks)), threads)
        tasks.append(Task(label(spec), call, failed))
    return tasks


def runs(specs: list[RunSpec], dataset, source: DatasetSource, folder: Path, *, track: bool, threads: int | None,
         split: str, seeds: list[int], label: Callable[[RunSpec], str], context: dict) -> Submission:
    """``bench run``: its runs on ``dataset`` (loaded; tasks load it from ``source``), and when tracking,
    the data ceiling of each split seed whose current one the store lacks."""
    tasks = _run_tasks(specs, {dataset.name: dataset}, {dataset.name: source}, folder, track, threads, label)
    if track:
        for seed in ceiling_runs.missing_seeds(dataset, split, seeds):
            tasks.append(Task(f"ceiling (split-half) {split} seed {seed}",
                              CeilingTask(source, split, seed, progress_path(folder, len(tasks)))))
    return Submission(folder, "run", tasks, track, context)


def check(specs: list[RunSpec], datasets: dict, folder: Path, *, track: bool, label: Callable[[RunSpec], str],
          context: dict) -> Submission:
    """``bench check``: the reference's runs, one thread each (the pinned profile is set by the caller)."""
    sources = {name: DatasetSource(name) for name in datasets}
    return Submission(folder, "check", _run_tasks(specs, datasets, sources, folder, track, 1, label), track, context)


def sweep(spec, source: DatasetSource, workers: int, folder: Path, *, track: bool, threads: int | None) -> Submission:
    """``bench sweep``: ``workers`` workers of one study."""
    tasks = [Task(f"sweep worker {number} of {spec.study}",
                  SweepWorker(spec, source, track, progress_path(folder, number - 1), threads))
             for number in range(1, workers + 1)]
    return Submission(folder, "sweep", tasks, track, {"spec": spec})
