"""The one way runs are executed: ``bench run``, ``bench check`` and a sweep's trials hand a list of
``RunSpec`` to ``execute``, which runs them in this process one after another, or in worker processes
(``parallel``), shows them on a progress display and hands each result to the caller as it ends."""

from __future__ import annotations

import warnings
from collections.abc import Callable

from bench.adapters.kit.environment import ModelEnvironment
from bench.core import registry
from bench.core.api import GeneKnowledge, RunResult, StopTraining
from bench.core.errors import BenchWarning
from bench.core.progress import Display, RunProgress
from bench.workflows import parallel, runner
from bench.workflows.runner import PreparedDataset, RunSpec


def execute(specs: list[RunSpec], datasets: dict[str, PreparedDataset], *, workers: int = 0, threads: int = 1,
            environment: dict[str, str] | None = None, knowledge: GeneKnowledge | None = None,
            report: Callable[[int, float], None] | None = None, done: Callable[[RunResult], None] | None = None,
            display: Display | None = None, label: Callable[[RunSpec], str] = lambda spec: spec.card.name,
            done_phase: str | None = None) -> list[RunResult]:
    """The results of ``specs`` (on ``datasets``, by name), in their order.

    ``workers`` 0 runs them in this process, one after another, with ``knowledge`` and ``report``
    (which hears each validation value and may stop the run by raising ``StopTraining``: a sweep's
    pruning, which passes through). ``workers`` n runs each in a fresh worker process, n at a time, on
    ``threads`` threads with ``environment`` set (``parallel.run_many``; a worker reads the store's gene
    knowledge itself). ``done(result)`` is called here as each run ends, in any order, before ``display``
    shows it finished, and meanwhile ``display`` shows the run in ``done_phase`` (e.g. logging it: its time is
    not the last phase's); ``display`` shows each run, named ``label(spec)``, from its start. A model's crash
    fails its own run only; bad input (a ``BenchError``) stops every run and is raised."""
    results: dict[int, RunResult] = {}

    def finished(index: int, result: RunResult) -> None:
        if done is not None:
            if display is not None and done_phase:
                display.update(index, phase=done_phase)
            done(result)
        if display is not None:
            display.finish(index, result.status)
        results[index] = result

    if workers:
        _announce_environments(specs)

        def watch(index: int, state: dict | None) -> None:
            if display is None:
                return
            if state is None:
                display.start(index, label(specs[index]))
            else:
                display.update(index, **state)

        parallel.run_many(specs, datasets, workers, threads, finished, environment, progress=watch)
    else:
        for index, spec in enumerate(specs):
            finished(index, _in_process(index, spec, datasets[spec.dataset], knowledge, report, display, label))
    return [results[index] for index in range(len(specs))]


def _announce_environments(specs: list[RunSpec]) -> None:
    """Say here, in one line per model, that a run will build a model's own environment first: a worker
    process's warnings do not reach the user (its progress line shows the build)."""
    for card in {spec.card.name: spec.card for spec in specs}.values():
        requirements = registry.requirements_file(card)
        if requirements is not None and not ModelEnvironment(requirements, card.name).ready():
            warnings.warn(f"model '{card.name}' runs in its own environment, not built yet: its first run builds it "
                          f"(minutes; `bench env create {card.name}` builds it ahead)", BenchWarning)


def _in_process(index: int, spec: RunSpec, dataset: PreparedDataset, knowledge: GeneKnowledge | None,
                report: Callable[[int, float], None] | None, display: Display | None,
                label: Callable[[RunSpec], str]) -> RunResult:
    phase = None
    if display is not None:
        reporter = RunProgress(display, index, label(spec), forward=report)
        phase, report = reporter.phase, reporter.report
    try:
        return runner.run(spec, dataset, knowledge=knowledge, report=report, progress=phase)
    except StopTraining:
        if display is not None:
            display.finish(index, "pruned")
        raise
