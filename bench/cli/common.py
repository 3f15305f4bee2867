"""What the ``bench`` commands share: the consoles, the settings of the command line, the device option,
loading a dataset with a note, preparing it, the summary table, tracking the data ceiling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
    made: a refused split leaves no DE cache behind."""
    from bench.evaluation import splits
    from bench.workflows import runner

    for seed in seeds:
        splits.obtain(loaded.adata, loaded.name, loaded.sha256, split, seed)
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


def _difference(runs: list, reference: list, subgroup: str, metric: str) -> str:
    """``+0.012 [-0.004, +0.030]*`` of a model's runs against the reference's, paired by seed."""
    from bench.reporting.leaderboard import paired_over_seeds

    theirs = {r.seed: r.per_perturbation for r in reference if r.ok}
    diff = paired_over_seeds([(r.per_perturbation, theirs[r.seed]) for r in runs if r.ok and r.seed in theirs],
                             subgroup, metric)
    if not diff.n:
        return ""
    if diff.n < 2:
        return f"{diff.mean:+.3f} (one perturbation)"
    return f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]" + ("*" if diff.significant else "")


def summary_table(results, shown: list[str], baselines: set[str] = frozenset()) -> Table:
    """Models ranked by ``all/<first shown metric>``, a line per subgroup with mean ± sd over seeds and the
    difference to the best baseline of those run on the most seeds (as the leaderboard chooses it)."""
    from bench.evaluation import metrics as metric_registry
    from bench.evaluation.metrics import METRICS
    from bench.evaluation.stats import over_seeds
    from bench.reporting.leaderboard import best_baseline

    by_model: dict[str, list] = {}
    for result in results:
        by_model.setdefault(result.model, []).append(result)
    headline = shown[0]
    means = {model: over_seeds([r.metrics.get(f"all/{headline}", float("nan")) for r in runs if r.ok]).mean
             for model, runs in by_model.items()}
    seeds = {model: sum(r.ok for r in runs) for model, runs in by_model.items()}
    reference = best_baseline({model: mean for model, mean in means.items() if model in baselines}, headline, seeds)

    def rank_key(model: str) -> float:
        return -METRICS[headline].sign * means[model] if means[model] == means[model] else float("inf")

    caption = (f"Δ: {headline} minus that of {reference} (of the baselines run on the most seeds, the best), "
               "mean over test perturbations paired by seed, with its paired bootstrap 95% CI; * where the CI excludes 0" if reference else
               "no baseline was run: add one (e.g. --model additive,...) to see each model's difference to it")
    table = Table(title=f"test metrics (mean ± sd over seeds), ranked by all/{headline}", caption=caption)
    delta = [f"Δ {headline}"] if reference else []
    for column in ("rank", "model", "subgroup", "n seeds", *shown, *delta):
        table.add_column(column, justify="left" if column in ("model", "subgroup") else "right")
    for rank, model in enumerate(sorted(by_model, key=rank_key), start=1):
        runs = by_model[model]
        done = [r for r in runs if r.ok]
        name = model + (" (reference)" if model == reference else "")
        for r in runs:
            if not r.ok:
                table.add_row(str(rank), name, Text.assemble((r.status, "red"), f" seed {r.seed}"), "", r.error or "",
                              *[""] * (len(shown) - 1))
        tested = {key.split("/")[0] for r in done for key in r.metrics if metric_registry.is_test_metric(key)}
        subgroups = sorted(tested, key=lambda s: (s != "all", s))
        for i, subgroup in enumerate(subgroups):
            cells = [str(over_seeds([r.metrics.get(f"{subgroup}/{m}", float("nan")) for r in done])) for m in shown]
            if reference:
                cells.append("" if model == reference else _difference(done, by_model[reference], subgroup, headline))
            table.add_row(str(rank), name, subgroup, str(len(done)), *cells, end_section=i == len(subgroups) - 1)
    return table


def close_run(results, shown: list[str], baselines: set[str], dataset: str, track: bool) -> None:
    """The end of ``bench run``: the summary table, where to look, and exit code 1 when a run failed."""
    console.print(summary_table(results, shown, baselines))
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
