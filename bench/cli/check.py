"""``bench check``: the reference check. Re-run the configurations of a reference file and fail on regressions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.cli.common import DEVICE, run_label
from bench.core.errors import BenchError
from bench.core.progress import Display, busy
from bench.core.registry import preset_label

console = Console()
err_console = Console(stderr=True)
STYLE = {"ok": "green", "improved": "cyan", "regressed": "bold red", "failed": "bold red", "missing": "bold red"}
BAD = ("regressed", "failed", "missing")


def _diff_table(verdicts) -> Table:
    table = Table(title="bench check: now vs reference (mean over the reference's seeds)")
    for column in ("configuration", "metric", "reference", "now", "change", "tolerance", "verdict"):
        table.add_column(column, justify="left" if column in ("configuration", "metric", "verdict") else "right")
    for line in verdicts.itertuples(index=False):
        verdict = f"[{STYLE[line.verdict]}]{line.verdict}[/]" + (f": {escape(line.detail)}" if line.detail else "")
        table.add_row(escape(f"{preset_label(line.model, line.preset)} {line.dataset}/{line.split} seeds {line.seeds}"),
                      f"{line.subgroup}/{line.metric}", f"{line.mean:.4f}", f"{line.now:.4f}",
                      f"{line.change:+.4f}", f"{line.tolerance:.4f}", verdict)
    return table


def check(
    reference: Annotated[Path | None, typer.Option(help="Reference CSV: configurations, metrics and values (default: the catalog's).")] = None,
    update: Annotated[bool, typer.Option("--update", help="Re-run and rewrite the reference's values instead of checking.")] = False,
    device: DEVICE = "cpu",
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the re-runs to MLflow.")] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Runs at a time, one thread each (default: the free cores).")] = None,
) -> None:
    """Re-run the reference's configurations under a pinned numeric profile; exit 1 with a diff when a
    metric regressed or a model fails."""
    from bench.core import atomic, devices, numeric_env, paths, threads
    from bench.workflows import reference_check, tracking
    from bench.workflows.execution import execute

    reference = reference or paths.reference_file()
    if update and paths.inside_installed_package(reference):
        raise BenchError(f"{reference} belongs to the installed package; write your own with --reference FILE")
    table = reference_check.read_reference(reference, require_values=not update)
    resolved = devices.resolve(device)
    if track:
        tracking.check_store()
    jobs = jobs or threads.free_cores()
    specs = reference_check.run_specs(table, resolved)
    console.print(f"{len(specs)} run(s), {jobs} at a time, under the numeric profile '{numeric_env.PROFILE_NAME}'",
                  markup=False, highlight=False)
    if not numeric_env.cpu_supports_profile():
        err_console.print("warning: this CPU lacks AVX2/FMA (or is not x86-64), so the pinned numeric profile cannot "
                          "apply: values may differ from the reference beyond rounding", markup=False, highlight=False)
    with busy(console, "loading the datasets and ranking their DE genes"):
        datasets = reference_check.prepared_datasets(table)
    with Display(console, len(specs)) as display:
        done = tracking.log_run if track else None
        runs = execute(specs, datasets, workers=jobs, threads=1, environment=numeric_env.profile_environment(),
                       done=done, display=display, label=lambda spec: run_label(spec, where=True))
    results = reference_check.by_config(table, runs)
    if update:
        atomic.write_text(reference, reference_check.updated(table, results).to_csv(index=False))
        console.print(f"updated {reference}: {len(table)} line(s), {len(results)} configuration(s)")
        return
    verdicts = reference_check.compare(table, results)
    console.print(_diff_table(verdicts))
    bad = verdicts[verdicts["verdict"].isin(BAD)]
    improved = int((verdicts["verdict"] == "improved").sum())
    if improved:
        console.print(f"{improved} line(s) improved beyond tolerance: `bench check --update` records the new values")
    for line in bad.itertuples(index=False):
        console.print(reference_check.describe(line), markup=False, highlight=False, soft_wrap=True)
    if len(bad):
        console.print(f"[bold red]{len(bad)} of {len(verdicts)} line(s) regressed or failed[/]")
        raise typer.Exit(1)
    console.print(f"[green]all {len(verdicts)} line(s) within tolerance[/] (largest change "
                  f"{verdicts['change'].abs().max():.4f})")
