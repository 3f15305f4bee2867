"""The ``bench`` command line: run benchmarks, manage data, list what is known."""

from __future__ import annotations

import sys
import warnings
from typing import Annotated, Literal

import typer
from rich.table import Table

from bench.cli.check import check
from bench.cli.cluster import DETACH, DRY_RUN, EXECUTOR, SLURM, SLURM_PARALLEL, Cluster, close, jobs, submit
from bench.cli.common import (
    DEVICE,
    HEADLINE,
    Settings,
    close_run,
    console,
    err_console,
    load,
    log_ceilings,
    prepare,
    run_label,
)
from bench.cli.data import data_app
from bench.cli.environments import env_app
from bench.cli.external import export, score
from bench.cli.import_runs import import_runs
from bench.cli.leaderboard import leaderboard
from bench.cli.sweep import sweep
from bench.core.errors import BenchError, BenchWarning
from bench.core.processes import exit_on_termination
from bench.core.progress import Display, line_interval
from bench.core.redaction import redact
from bench.core.seeds import parse_seeds
from bench.core.textfiles import one_line

app = typer.Typer(
    help="Benchmark gene-perturbation response predictors on frozen splits with pinned metrics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help is plain text: rich markup would swallow '[search_space]'
)
app.add_typer(data_app, name="data")
app.add_typer(env_app, name="env")
app.command()(sweep)
app.command()(leaderboard)
app.command()(check)
app.command()(export)
app.command()(score)
app.command()(jobs)
app.command(name="import-runs")(import_runs)


@app.callback()
def _root(ctx: typer.Context,
          debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False) -> None:
    ctx.ensure_object(Settings).debug = debug
    line_interval()  # a bad BENCH_PROGRESS_INTERVAL is refused before any work


@app.command()
def run(
    model: Annotated[str, typer.Option("--model", "-m", help="Model card(s), comma-separated, e.g. linear,additive.")],
    split: Annotated[str, typer.Option("--split", "-s", help="Split setting (see `bench list splits`).")] = "simulation",
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="Dataset name or .h5ad path (default: Norman if present).")
    ] = None,
    seeds: Annotated[str, typer.Option(help="Split seeds, e.g. 1-5 or 1,2,3.")] = "1",
    device: DEVICE = "auto",
    preset: Annotated[str | None, typer.Option(help="Named parameter set of the card (fast, default, paper).")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Override one parameter: key=value (repeatable).")] = None,
    perturbation_key: Annotated[str | None, typer.Option(help="obs column of perturbations (.h5ad path).")] = None,
    control_value: Annotated[str | None, typer.Option(help="Its value for control cells (.h5ad path).")] = None,
    cell_type_key: Annotated[str | None, typer.Option(help="obs column of cell types (.h5ad path).")] = None,
    metrics: Annotated[str, typer.Option(help="Metrics shown in the summary table.")] = HEADLINE,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log runs to MLflow.")] = True,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Runs in parallel worker processes.")] = 1,
    threads: Annotated[
        int, typer.Option(min=0, help="Compute threads per run (default 0: the free cores, shared between --jobs; "
                                      "on Slurm, the CPUs of each task).")
    ] = 0,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Run only the runs without a finished run of the same card, split file and metrics in the "
                         "tracking store.")] = False,
    executor: EXECUTOR = "local",
    slurm: SLURM = None,
    slurm_parallel: SLURM_PARALLEL = None,
    detach: DETACH = False,
    dry_run: DRY_RUN = False,
) -> None:
    """Train, predict counterfactually and score models on a split; log every run to MLflow."""
    from bench.core import devices, registry
    from bench.evaluation import metric_catalog
    from bench.evaluation import split_settings

    shown = metric_catalog.check_names([m.strip() for m in metrics.split(",") if m.strip()])
    split_settings.check_name(split)
    seed_list = parse_seeds(seeds)
    names = [name.strip() for name in model.split(",") if name.strip()]
    if not names:
        raise BenchError(f"--model names no model card ('{model}'); give one or more, e.g. --model linear,additive")
    cards = [registry.find_card(name) for name in names]
    params = {card.name: registry.resolve_params(card, preset, param or ()) for card in cards}
    from bench.workflows import resume as resuming  # imports NumPy, pandas, AnnData: after the quick checks
    from bench.workflows import runner, tracking

    for card in cards:
        registry.build(card, params[card.name])
    cluster = Cluster(executor, slurm, slurm_parallel, detach)
    settings = cluster.settings()
    if cluster.on_slurm and jobs > 1:
        raise BenchError("--jobs runs worker processes on this machine; on Slurm every run is a task of its own "
                         "(--slurm-parallel N limits how many run at once)")
    resolved_device = device if cluster.on_slurm else devices.resolve(device)  # a node resolves its own
    if track or resume:
        tracking.check_store()
    loaded = load(dataset, perturbation_key, control_value, cell_type_key)
    specs = [runner.RunSpec(card, params[card.name], loaded.name, split, seed, preset, resolved_device)
             for card in cards for seed in seed_list]
    if resume:
        wanted = resuming.missing(specs, loaded)
        console.print(f"resume: {len(specs) - len(wanted)} of {len(specs)} run(s) already finished in the tracking "
                      "store, skipped", markup=False, highlight=False, soft_wrap=True)
        specs = wanted
    baselines = {card.name for card in cards if card.baseline}
    if cluster.on_slurm:
        from bench.workflows.slurm_tasks import DatasetSource

        source = DatasetSource.of(dataset, loaded.name, perturbation_key, control_value, cell_type_key)
        run_on_slurm(specs, loaded, source, settings, device=device, threads=threads or None, track=track,
                     shown=shown, baselines=baselines, split=split, seeds=seed_list, dry_run=dry_run, detach=detach)
        return
    if dry_run:
        console.print("\n".join(run_label(spec, where=True) for spec in specs) or "nothing to run",
                      markup=False, highlight=False)
        console.print("dry run: nothing ran", markup=False)
        return
    run_here(specs, loaded, jobs=jobs, threads=threads, track=track, shown=shown, baselines=baselines,
             split=split, seeds=seed_list)


def run_on_slurm(specs, loaded, source, settings, *, device: str, threads: int | None, track: bool, shown: list[str],
                 baselines: set[str], split: str, seeds: list[int], dry_run: bool, detach: bool) -> None:
    """``bench run --executor slurm``: the runs, and the data ceilings the store lacks, as one job array."""
    from bench.workflows import slurm_grid
    from bench.workflows.slurm import new_folder

    submission = slurm_grid.runs(specs, loaded, source, new_folder(settings, "run"), track=track, threads=threads,
                                 split=split, seeds=seeds, label=run_label,
                                 context={"shown": shown, "baselines": baselines, "dataset": loaded.name})
    if not submission.tasks:
        console.print("nothing to run", markup=False)
        return
    parameters = settings.submitit_parameters("bench-run", device, threads)
    outcomes = submit(submission, settings, parameters, dry_run=dry_run, detach=detach, track=track)
    if outcomes is not None:
        close(submission, outcomes)


def run_here(specs, loaded, *, jobs: int, threads: int, track: bool, shown: list[str], baselines: set[str],
             split: str, seeds: list[int]) -> None:
    """``bench run`` on this machine: in this process, or ``jobs`` worker processes."""
    from bench.core import threads as thread_pools
    from bench.data.knowledge import StoreGeneKnowledge
    from bench.workflows import timings, tracking
    from bench.workflows.execution import execute

    busy = thread_pools.busy_cores()
    free = thread_pools.free_cores(busy)
    per_run = threads or max(1, free // jobs)
    if jobs == 1:
        thread_pools.limit(per_run)
    console.print(f"threads: {per_run} per run, {jobs} run(s) at a time ({free} of {thread_pools.usable_cores()} "
                  "cores free)", markup=False, highlight=False)
    names = list(dict.fromkeys(spec.card.name for spec in specs))
    preset = specs[0].preset if specs else None
    device = specs[0].device if specs else "cpu"
    expected = timings.announcement(names, preset, device, loaded.name, loaded.adata.shape,
                                    len({spec.seed for spec in specs}), jobs,
                                    slowdown=thread_pools.slowdown(busy, jobs, per_run), busy=busy)
    if expected:
        console.print(expected, markup=False, highlight=False, soft_wrap=True)
    prepared = prepare(loaded, split, seeds)

    def finished(result) -> None:
        if track:
            tracking.log_run(result)
        if not result.ok:
            err_console.print(f"{result.status.lower()}: {result.model} seed {result.seed}: {result.error}")

    with Display(console, len(specs)) as display:
        results = execute(specs, {prepared.name: prepared}, workers=jobs if jobs > 1 else 0, threads=per_run,
                          knowledge=StoreGeneKnowledge(), done=finished, display=display, label=run_label,
                          done_phase=tracking.LOGGING if track else None)
    if track:
        log_ceilings(prepared, split, seeds)
    close_run(results, shown, baselines, loaded.name, track)


@app.command("list")
def list_(
    what: Annotated[Literal["models", "datasets", "splits", "metrics", "all"],
                    typer.Argument(metavar="SECTION", help="The section to show (default: every section).")] = "all",
) -> None:
    """Show the model cards, datasets, split settings and metrics the harness knows."""
    from bench.core import paths, registry
    from bench.data.manifest import all_manifests
    from bench.evaluation.metric_catalog import METRICS
    from bench.evaluation.split_settings import DESCRIPTIONS

    sections = {
        "models": lambda: [(c.name, c.description + (" [baseline]" if c.baseline else "")
                            + ("" if c.path.parent == paths.models_dir() else f" [{c.path.parent}]"))
                           for c in registry.all_cards().values()],
        "datasets": lambda: [(m.name, f"{m.kind}, {m.format}: {m.description}") for m in all_manifests().values()],
        "splits": lambda: list(DESCRIPTIONS.items()),
        "metrics": lambda: [(m.name, f"{m.goal}: {m.definition}") for m in METRICS.values()],
    }
    for name, rows in sections.items():
        if what in ("all", name):
            listed = rows()
            table = Table(title=name, show_header=False)
            # the names whole at any width (80 columns in a log file): the descriptions wrap instead
            table.add_column("name", style="bold", no_wrap=True, min_width=max(len(row[0]) for row in listed))
            table.add_column("description")
            for row in listed:
                table.add_row(*row)
            console.print(table)


# typer 0.29 raises the exceptions of its own bundled click, older typer those of the click package:
# take click's base classes from typer's public exceptions, so both are caught.
CLICK_ERROR = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def _usage_error(exc) -> str:
    """A click error as one line, without the "Value error, " with which typer (through pydantic) starts the
    message of a value that is none of an option's choices."""
    return one_line(exc.format_message().replace("Value error, ", ""))


def _print_traceback() -> None:
    """The exception being handled, as Python prints it, without secrets (``bench.core.redaction``)."""
    import traceback

    sys.stderr.write(redact(traceback.format_exc()))


def _show_warning(message, category, filename, lineno, file=None, line=None, _python=warnings.showwarning) -> None:
    """bench's own warnings (``BenchWarning``) as one ``warning:`` line; others as Python shows them."""
    if issubclass(category, BenchWarning):
        err_console.print(f"warning: {redact(one_line(message))}", markup=False, highlight=False, soft_wrap=True)
    else:
        _python(message, category, filename, lineno, file, line)


def main() -> None:
    """Console entry point: usage and user errors print one line and exit with code 2 (``--debug``:
    traceback)."""
    settings = Settings()
    # The consoles keep this process's streams: a model's library fenced by ``isolated`` redirects sys.stdout
    # and sys.stderr while it trains, and progress lines printed meanwhile must still reach the user.
    console.file, err_console.file = sys.stdout, sys.stderr
    warnings.showwarning = _show_warning
    exit_on_termination()
    try:
        code = app(standalone_mode=False, prog_name="bench", obj=settings)
    except BenchError as exc:
        if settings.debug:
            _print_traceback()
        else:
            err_console.print(f"error: {redact(one_line(exc))}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except CLICK_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `bench` alone, or a group without a command: help
            exc.show()
            sys.exit(exc.exit_code)
        context = getattr(exc, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        err_console.print(f"error: {_usage_error(exc)}{hint}", markup=False, highlight=False,
                          soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception:  # a defect, or a library's error that names a store with its password
        _print_traceback()
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
