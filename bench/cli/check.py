"""``bench check``: the reference check. Re-run the configurations of a reference file and fail on regressions."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from bench.cli.cluster import DETACH, EXECUTOR, SLURM, SLURM_PARALLEL, Cluster, close, submit
from bench.cli.common import DEVICE, console, err_console, run_label
from bench.core import outputs
from bench.core.errors import BenchError
from bench.core.progress import Display, busy
from bench.core.registry import preset_label

STYLE = {"ok": "green", "improved": "cyan", "regressed": "bold red", "failed": "bold red", "missing": "bold red"}
BAD = ("regressed", "failed", "missing")
INDENT = "  "


def _diff_lines(verdicts, width: int = 80) -> list[Text]:
    """The verdicts under a line per configuration, in columns that fit ``width`` (80 in a log file); a
    verdict's detail on lines of its own, wrapped, never cut."""
    columns = ("metric", "ref.", "now", "change", "tol.", "verdict")
    rows = {}
    for line in verdicts.itertuples(index=False):
        configuration = f"{preset_label(line.model, line.preset)} {line.dataset}/{line.split} seeds {line.seeds}"
        rows.setdefault(configuration, []).append(
            (line, [f"{line.subgroup}/{line.metric}", f"{line.mean:.4f}", f"{line.now:.4f}", f"{line.change:+.4f}",
                    f"{line.tolerance:.4f}"]))
    cells = [values for lines in rows.values() for _, values in lines]
    widths = [max([len(column), *(len(values[i]) for values in cells)]) for i, column in enumerate(columns[:-1])]

    def row(values: list[str]) -> str:
        first, *numbers = zip(values, widths)
        return INDENT + first[0].ljust(first[1]) + " " + "".join(" " + v.rjust(w) for v, w in numbers)

    title = "bench check: now vs reference (ref.: the reference's mean over its seeds; tol.: the tolerance)"
    out = [*(Text(part, style="bold") for part in textwrap.wrap(title, width)),
           Text(row(list(columns[:-1])) + "  verdict", style="bold")]
    for configuration, lines in rows.items():
        out += [Text(part, style="bold") for part in textwrap.wrap(configuration, width)]
        for line, values in lines:
            out.append(Text.assemble(row(values) + "  ", (line.verdict, STYLE[line.verdict])))
            if line.detail:
                out += [Text(part) for part in textwrap.wrap(line.detail, width, initial_indent=INDENT * 2,
                                                             subsequent_indent=INDENT * 2, break_long_words=False)]
    return out


def check(
    reference: Annotated[Path | None, typer.Option(help="Reference CSV: configurations, metrics and values (default: the catalog's).")] = None,
    update: Annotated[bool, typer.Option("--update", help="Re-run and rewrite the reference's values instead of checking.")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --update: from uncommitted changes to bench/ too.")] = False,
    device: DEVICE = "cpu",
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the re-runs to MLflow.")] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Runs at a time, one thread each (default: the free cores).")] = None,
    executor: EXECUTOR = "local",
    slurm: SLURM = None,
    slurm_parallel: SLURM_PARALLEL = None,
    detach: DETACH = False,
) -> None:
    """Re-run the reference's configurations under a pinned numeric profile; exit 1 with a diff when a
    metric regressed or a model fails."""
    from bench.core import devices, numeric_env, paths, threads
    from bench.workflows import reference_check, source_state, tracking
    from bench.workflows.execution import execute

    reference = reference or paths.reference_file()
    if update and paths.inside_installed_package(reference):
        raise BenchError(f"{reference} belongs to the installed package; write your own with --reference FILE")
    if update and not force and source_state.is_dirty():
        raise BenchError(f"{paths.PACKAGE} has uncommitted changes (see `git status {paths.PACKAGE}`): values made "
                         "from them match no commit; commit them first, or pass --force")
    table = reference_check.read_reference(reference, require_values=not update)
    if update:
        outputs.probe(reference.parent, reference.name)  # before the runs, not after them
    cluster = Cluster(executor, slurm, slurm_parallel, detach)
    settings = cluster.settings()
    if cluster.on_slurm and jobs:
        raise BenchError("--jobs runs worker processes on this machine; on Slurm every run is a task of its own "
                         "(--slurm-parallel N limits how many run at once)")
    resolved = device if cluster.on_slurm else devices.resolve(device)
    if track:
        tracking.check_store()
    specs = reference_check.run_specs(table, resolved)
    if not numeric_env.cpu_supports_profile():
        err_console.print("warning: this CPU lacks AVX2/FMA (or is not x86-64), so the pinned numeric profile cannot "
                          "apply: values may differ from the reference beyond rounding", markup=False, highlight=False)
    if cluster.on_slurm:
        _check_on_slurm(specs, reference, table, update, settings, device, track, detach)
        return
    jobs = jobs or threads.free_cores()
    console.print(f"{len(specs)} run(s), {jobs} at a time, under the numeric profile '{numeric_env.PROFILE_NAME}'",
                  markup=False, highlight=False)
    with busy(console, "loading the datasets and ranking their DE genes"):
        datasets = reference_check.prepared_datasets(table)
    with Display(console, len(specs)) as display:
        done = tracking.log_run if track else None
        runs = execute(specs, datasets, workers=jobs, threads=1, environment=numeric_env.profile_environment(),
                       done=done, display=display, label=lambda spec: run_label(spec, where=True),
                       done_phase=tracking.LOGGING if track else None)
    verdict(reference, table, runs, update)


def _check_on_slurm(specs, reference: Path, table, update: bool, settings, device: str, track: bool,
                    detach: bool) -> None:
    """The reference's runs as one Slurm job array, each task under the pinned numeric profile."""
    import shlex

    from bench.core import numeric_env
    from bench.data.datasets import load_dataset
    from bench.workflows import slurm_grid
    from bench.workflows.slurm import new_folder

    console.print(f"{len(specs)} run(s) as one Slurm job array, under the numeric profile "
                  f"'{numeric_env.PROFILE_NAME}'", markup=False, highlight=False)
    with busy(console, "loading the datasets"):
        datasets = {name: load_dataset(name, counts=False) for name in dict.fromkeys(spec.dataset for spec in specs)}
    submission = slurm_grid.check(specs, datasets, new_folder(settings, "check"), track=track,
                                  label=lambda spec: run_label(spec, where=True),
                                  context={"reference": reference, "table": table, "update": update})
    parameters = settings.submitit_parameters("bench-check", device, 1)
    profile = [f"export {name}={shlex.quote(value)}" for name, value in numeric_env.profile_environment().items()]
    parameters["setup"] = [*parameters.get("setup", []), *profile]  # before numpy loads in the task
    outcomes = submit(submission, settings, parameters, dry_run=False, detach=detach, track=track)
    if outcomes is not None:
        close(submission, outcomes)


def verdict(reference: Path, table, runs: list, update: bool) -> None:
    """The end of ``bench check``: rewrite the reference (``update``), or the diff table and exit code 1 when
    a line regressed or failed."""
    from bench.core import atomic
    from bench.workflows import reference_check

    results = reference_check.by_config(table, runs)
    if update:
        atomic.write_text(reference, reference_check.updated(table, results).to_csv(index=False))
        console.print(f"updated {reference}: {len(table)} line(s), {len(results)} configuration(s)")
        return
    verdicts = reference_check.compare(table, results)
    for line in _diff_lines(verdicts, console.width):
        console.print(line, soft_wrap=True, highlight=False)
    bad = verdicts[verdicts["verdict"].isin(BAD)]
    improved = int((verdicts["verdict"] == "improved").sum())
    if improved:
        console.print(f"{improved} line(s) improved beyond tolerance: `bench check --update` records the new values")
    for line in bad.itertuples(index=False):
        console.print(reference_check.describe(line), markup=False, highlight=False, soft_wrap=True)
    if len(bad):
        console.print(Text(f"{len(bad)} of {len(verdicts)} line(s) regressed or failed", style="bold red"))
        raise typer.Exit(1)
    console.print(Text.assemble((f"all {len(verdicts)} line(s) within tolerance", "green"),
                                f" (largest change {verdicts['change'].abs().max():.4f})"))
