"""What the ``bench`` commands share: the consoles, the settings of the command line, the device option,
loading a dataset with a note, preparing it, printing the closing table, tracking the data ceiling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import typer
from rich.console import Console

from bench.core.devices import DEVICES
from bench.core.progress import busy

# Neither reads rich markup, so paths and user values print as they are ('[x]', '/root/[/y]'); style with Text.
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)
HEADLINE = "pearson_delta_de20,pearson_delta,mse_de20"  # the metrics commands show unless --metric(s) says otherwise
DEVICE = Annotated[Literal[DEVICES], typer.Option(help="Compute device; auto takes a CUDA GPU where torch sees one.")]


@dataclass
class Settings:
    """The options of ``bench`` itself, for its commands and for ``main``: click's context object."""

    debug: bool = False


def load(dataset: str | None, perturbation_key, control_value, cell_type_key, counts: bool = False):
    """The dataset (the default one when ``None``), announced on the console; the raw counts only with
    ``counts`` (a run loads them for the models that read them)."""
    from bench.data.datasets import default_dataset, load_dataset

    if dataset is None:
        dataset, note = default_dataset()
        console.print(note, markup=False, highlight=False)
    else:
        console.print(f"dataset: {dataset}{_simulated(dataset)}", markup=False, highlight=False)
    with busy(console, f"loading {dataset}"):
        return load_dataset(
            dataset, perturbation_key=perturbation_key, control_value=control_value, cell_type_key=cell_type_key,
            counts=counts,
        )


def prepare(loaded, split: str, seeds: list[int]):
    """``runner.PreparedDataset`` of ``loaded``, its DE genes ranked (and cached) only once every split seed is
    made: a refused split leaves no DE cache behind. Seeds without a committed split file are named in a line."""
    from bench.evaluation import splits
    from bench.workflows import runner

    found = {seed: splits.obtain(loaded.adata, loaded.name, loaded.sha256, split, seed)[1] for seed in seeds}
    made_here = {seed: path for seed, path in found.items() if not splits.is_committed(path)}
    if made_here:
        console.print(f"{split} seed(s) {', '.join(map(str, made_here))} of {loaded.name}: not committed with bench, "
                      f"so made on this machine and kept in {next(iter(made_here.values())).parent} "
                      "(their test sets are nobody else's; the leaderboard notes their runs)",
                      markup=False, highlight=False, soft_wrap=True)
    with busy(console, f"ranking DE genes of {loaded.name} (cached after the first run)"):
        return runner.PreparedDataset.of(loaded)


def _simulated(dataset: str) -> str:
    """A note for a dataset that the simulator makes (real data are not announced)."""
    from bench.data.manifest import all_manifests

    manifest = all_manifests().get(str(dataset))
    if manifest is None or manifest.format != "synthetic":
        return ""
    return " (simulated by bench's simulator, not measured cells: scores show behaviour on a planted truth)"


def run_label(spec, where: bool = False) -> str:
    """``model [preset] seed k`` (``where``: with dataset/split) of a ``RunSpec``, for progress lines."""
    from bench.core.registry import DEFAULT_PRESET, preset_label

    return (f"{preset_label(spec.card.name, spec.preset or DEFAULT_PRESET)}"
            + (f" {spec.dataset}/{spec.split}" if where else "") + f" seed {spec.seed}")


def print_closing_table(results, shown: list[str], baselines: set[str] = frozenset(), **options) -> None:
    """The closing table (``bench.cli.closing_table``, with its ``options``) at the console's width."""
    from bench.cli.closing_table import closing_table

    for line in closing_table(results, shown, baselines, console.width, **options):
        console.print(line, soft_wrap=True, highlight=False)


def close_run(results, shown: list[str], baselines: set[str], dataset: str, track: bool) -> None:
    """The end of ``bench run``: the summary table, where to look, and exit code 1 when a run failed."""
    print_closing_table(results, shown, baselines)
    if track:
        console.print(where_to_look(dataset), markup=False, highlight=False, soft_wrap=True)
    if any(r.status == "FAILED" for r in results):
        raise typer.Exit(1)


def where_to_look(dataset: str) -> str:
    """The closing line of a tracked run: how to browse the runs and build a leaderboard."""
    from bench.core.redaction import redact
    from bench.workflows import tracking

    uri = redact(tracking.tracking_uri())
    return (f"tracked in {uri}; browse with `mlflow ui --backend-store-uri {uri}`, tabulate with "
            f"`bench leaderboard --dataset {dataset}`")


def log_ceilings(prepared, split: str, seeds: list[int]) -> None:
    """Track the data ceiling (``bench.evaluation.ceiling``) of each split seed whose current one the store lacks;
    another process logging the same ceilings to the same SQLite store waits, then finds them there."""
    from bench.evaluation.ceiling import TARGET_SE
    from bench.workflows import ceiling_runs, tracking

    with tracking.ceiling_lock():
        for seed in ceiling_runs.missing_seeds(prepared, split, seeds):
            with busy(console, f"data ceiling of {split} seed {seed} (split-half halvings to a standard error "
                               f"below {TARGET_SE})"):
                run = ceiling_runs.result(prepared, split, seed)
            if run is not None:
                tracking.log_run(run)
