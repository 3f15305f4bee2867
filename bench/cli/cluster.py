"""``--executor slurm`` for ``bench run``, ``bench check`` and ``bench sweep``: their shared options,
submitting one job array and following it; and ``bench jobs``, which follows a submission later."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from bench.cli.common import console, err_console
from bench.core.errors import BenchError
from bench.core.progress import Display

EXECUTOR = Annotated[Literal["local", "slurm"], typer.Option(
    help="local: on this machine (worker processes with --jobs); slurm: one Slurm job array, through submitit.")]
SLURM = Annotated[list[str] | None, typer.Option(
    "--slurm", metavar="KEY=VALUE",
    help="A Slurm setting over the [slurm] table of your config file (repeatable): partition, account, qos, time, "
         "mem, cpus_per_task, gpus_per_task, gres, constraint, sbatch, setup, folder.")]
SLURM_PARALLEL = Annotated[int | None, typer.Option(
    "--slurm-parallel", min=1, help="Array tasks that run at once (Slurm's %N; default: the config's, else all).")]
DETACH = Annotated[bool, typer.Option(
    "--detach", help="With --executor slurm: return once submitted; follow later with `bench jobs FOLDER`.")]
DRY_RUN = Annotated[bool, typer.Option(
    "--dry-run", help="Show the runs, and with --executor slurm the Slurm request, without running anything.")]


@dataclass
class Cluster:
    """The executor options of one command."""

    executor: str = "local"
    slurm: list[str] | None = None
    parallel: int | None = None
    detach: bool = False

    @property
    def on_slurm(self) -> bool:
        return self.executor == "slurm"

    def settings(self):
        """The Slurm settings (None for the local executor, which refuses Slurm's options)."""
        from bench.workflows import slurm, slurm_settings

        if not self.on_slurm:
            given = [name for name, value in (("--slurm", self.slurm), ("--slurm-parallel", self.parallel),
                                              ("--detach", self.detach)) if value]
            if given:
                raise BenchError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --executor slurm; add "
                                 "--executor slurm, or leave it out to run on this machine")
            return None
        settings = slurm_settings.settings(self.slurm or (), self.parallel)
        slurm.require_slurm()
        return settings


def submit(submission, settings, parameters: dict, *, dry_run: bool, detach: bool, track: bool) -> list | None:
    """Submit ``submission`` as one job array and follow it to its end (``follow``); None when nothing is
    to follow (``dry_run``: the tasks and the request shown; ``detach``: submitted, not followed)."""
    from bench.workflows import slurm, tracking

    places = {"the submission folder": submission.folder}
    store = slurm.store_path() if track else None
    if store is not None:
        places["the tracking store"] = store
    warning = slurm.node_local_warning(settings.partition, places)
    if warning:
        err_console.print(warning, markup=False, highlight=False, soft_wrap=True)
    answer = slurm.test_request(submission, parameters)
    if dry_run:
        table = Table(title=f"{len(submission.tasks)} task(s) of one Slurm job array")
        table.add_column("task", justify="right")
        table.add_column("what")
        for index, task in enumerate(submission.tasks):
            table.add_row(str(index), task.label)
        console.print(table)
        console.print(slurm.sbatch_script(submission, parameters), markup=False, highlight=False, soft_wrap=True)
        console.print(f"Slurm's answer to `sbatch --test-only`: {answer}", markup=False, highlight=False,
                      soft_wrap=True)
        console.print("dry run: nothing submitted", markup=False)
        return None
    environment = {"MLFLOW_TRACKING_URI": tracking.tracking_uri()} if track else {}
    slurm.submit(submission, parameters, environment)
    at_once = parameters.get("array_parallelism")
    console.print(f"submitted Slurm job {submission.array_id}: {len(submission.tasks)} task(s)"
                  + (f", {at_once} at a time" if at_once else "") + f"; files in {submission.folder}",
                  markup=False, highlight=False, soft_wrap=True)
    if detach:
        console.print(f"follow it with: bench jobs {shlex.quote(str(submission.folder))}", markup=False,
                      highlight=False, soft_wrap=True)
        return None
    return follow(submission)


def follow(submission) -> list:
    """Watch every task of ``submission`` to its end; the outcome of each, in order: what it returned, or
    for a run Slurm ended without a result its FAILED run (recorded in the store), else the error text."""
    from bench.workflows import slurm

    outcomes: dict[int, object] = {}

    def done(index: int, outcome) -> None:
        failed = slurm.record_failure(submission, index, outcome)
        if outcome.error is not None:
            err_console.print(f"failed: {submission.tasks[index].label}: {outcome.error}", markup=False,
                              highlight=False, soft_wrap=True)
        outcomes[index] = failed if failed is not None else outcome.value if outcome.error is None else outcome.error

    try:
        with Display(console, len(submission.tasks), unit="tasks", refresh=1.0) as display:
            slurm.watch(submission, display, done)
    except KeyboardInterrupt:
        folder = shlex.quote(str(submission.folder))
        err_console.print(f"stopped following; the tasks go on: follow them with `bench jobs {folder}`, or cancel "
                          f"them with `scancel {submission.array_id}`", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    return [outcomes[index] for index in range(len(submission.tasks))]


def jobs(
    folder: Annotated[Path, typer.Argument(
        metavar="FOLDER", help="The folder `--executor slurm` printed (its submission files).")],
) -> None:
    """Follow a Slurm submission (one made with --detach, or whose command was stopped) to its end: show its
    tasks, record those Slurm ended as FAILED runs, then print what its command prints at the end."""
    from bench.workflows import slurm

    submission = slurm.Submission.load(folder)
    console.print(f"Slurm job {submission.array_id}: {len(submission.tasks)} task(s) of `bench {submission.kind}`",
                  markup=False, highlight=False)
    outcomes = follow(submission)
    close(submission, outcomes)


def close(submission, outcomes: list) -> None:
    """What the submitting command prints at the end, by its kind."""
    if submission.kind == "run":
        from bench.cli.common import close_run
        from bench.core.api import RunResult

        context = submission.context
        results = [outcome for outcome in outcomes if isinstance(outcome, RunResult)]
        close_run(results, context["shown"], context["baselines"], context["dataset"], submission.track)
    elif submission.kind == "check":
        from bench.cli.check import verdict

        verdict(submission.context["reference"], submission.context["table"], outcomes, submission.context["update"])
    else:
        from bench.cli.sweep import close_sweep

        close_sweep(submission.context["spec"])
