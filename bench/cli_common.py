"""What the ``bench`` commands share: the consoles, loading a dataset with a note, the summary table,
tracking the data ceiling."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from bench.progress import busy

console = Console()
err_console = Console(stderr=True)


def load(dataset: str | None, perturbation_key, control_value, cell_type_key, counts: bool = False):
    """The dataset (the default one when ``None``), announced on the console; the raw counts only with
    ``counts`` (a run loads them for the models that read them)."""
    from bench.data.datasets import default_dataset, load_dataset

    if dataset is None:
        dataset, note = default_dataset()
        console.print(note, markup=False, highlight=False)
    else:
        console.print(f"dataset: {dataset}", markup=False, highlight=False)
    with busy(console, f"loading {dataset}"):
        return load_dataset(
            dataset, perturbation_key=perturbation_key, control_value=control_value, cell_type_key=cell_type_key,
            counts=counts,
        )


def run_key(model: str, preset: str | None, dataset: str, split: str, seed: int) -> tuple:
    """What names one run among those a command starts (a progress display's key)."""
    return model, preset or "default", dataset, split, seed


def task_key(task) -> tuple:
    return run_key(task.card.name, task.preset, task.dataset, task.split, task.seed)


def result_key(result) -> tuple:
    return run_key(result.model, result.preset, result.dataset, result.split, result.seed)


def run_label(key: tuple, where: bool = False) -> str:
    """``model [preset] seed k`` (``where``: with dataset/split) for progress lines."""
    from bench.registry import preset_label

    model, preset, dataset, split, seed = key
    return f"{preset_label(model, preset)}" + (f" {dataset}/{split}" if where else "") + f" seed {seed}"


def summary_table(results, shown: list[str]) -> Table:
    from bench import metrics as metric_registry
    from bench.stats import over_seeds

    table = Table(title="test metrics (mean ± sd over seeds)")
    for column in ("model", "subgroup", "n seeds", *shown):
        table.add_column(column, justify="left" if column in ("model", "subgroup") else "right")
    by_model: dict[str, list] = {}
    for result in results:
        by_model.setdefault(result.model, []).append(result)
    for model, runs in by_model.items():
        done = [r for r in runs if r.ok]
        for r in runs:
            if not r.ok:
                table.add_row(model, f"[red]{r.status}[/red] seed {r.seed}", "", r.error or "", *[""] * (len(shown) - 1))
        subgroups = sorted({key.split("/")[0] for r in done for key in r.metrics if metric_registry.is_test_metric(key)})
        for subgroup in subgroups:
            cells = [str(over_seeds([r.metrics.get(f"{subgroup}/{m}", float("nan")) for r in done])) for m in shown]
            table.add_row(model, subgroup, str(len(done)), *cells)
    return table


def log_ceilings(prepared, split: str, seeds: list[int]) -> None:
    """Track the data ceiling (``bench.ceiling``) of each split seed whose current one the store lacks."""
    from bench import ceiling, tracking

    for seed in ceiling.missing_seeds(prepared, split, seeds):
        with busy(console, f"data ceiling of {split} seed {seed} ({ceiling.HALVINGS} split-half halvings)"):
            run = ceiling.result(prepared, split, seed)
        if run is not None:
            tracking.log_run(run)
