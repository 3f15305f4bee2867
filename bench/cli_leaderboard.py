"""``bench leaderboard``: Markdown and CSV tables (and PNG plots) from the runs tracked in MLflow."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench.errors import BenchError

console = Console()
err_console = Console(stderr=True)
HEADLINE = "pearson_delta_de20,pearson_delta,mse_de20"  # the metrics shown unless --metric(s) says otherwise


def _plots(board, table, metrics: list[str], out: Path, stem: str) -> dict[str, str]:
    """Bar plots per metric and the scatter plot; the file names written, by ``bars:<metric>``/``scatter``."""
    from bench import leaderboard_plots as plots

    images = {}
    title = f"{board.dataset} / {board.split}"
    for metric in metrics:
        path = out / f"{stem}_bars_{metric}.png"
        plots.bars(table[table["metric"] == metric], metric, path, title)
        images[f"bars:{metric}"] = path.name
    try:
        path = plots.scatter(board, out / f"{stem}_scatter.png", title)
    except BenchError as exc:
        err_console.print(f"warning: no scatter plot for {title}: {exc}", markup=False, highlight=False)
        return images
    if path is not None:
        images["scatter"] = path.name
    return images


def leaderboard(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset (default: every tracked one).")] = None,
    split: Annotated[str | None, typer.Option("--split", "-s", help="Only this split setting.")] = None,
    metric: Annotated[str, typer.Option("--metric", help="Metrics, comma-separated; the first picks the reference.")] = HEADLINE,
    reference: Annotated[str | None, typer.Option(help="Reference row (model, or 'model [preset]'); default: the best baseline.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for <dataset>.md, <dataset>.csv and the PNG plots.")] = Path("leaderboards"),
    latest: Annotated[bool, typer.Option("--latest", help="Keep only runs matching the newest split files, data, metrics and cards.")] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the PNG plots.")] = True,
) -> None:
    """Write leaderboards (Markdown, CSV, PNG) from tracked runs: mean ± sd over seeds, paired bootstrap CIs."""
    from bench import atomic, leaderboard as lb, leaderboard_render as render, metrics as metric_registry, splits
    from bench import tracking

    metrics = metric_registry.check_names([m.strip() for m in metric.split(",") if m.strip()])
    if not metrics:
        raise BenchError("--metric names no metric; see `bench list metrics`")
    if split is not None:
        splits.check_name(split)
    tracking.check_store()
    datasets = [dataset] if dataset else tracking.tracked_datasets()
    command = shlex.join(["bench", *sys.argv[1:]]) if sys.argv[1:2] == ["leaderboard"] else "bench leaderboard"
    scores = lb.PerPerturbation()
    written = []
    for name in datasets:
        board_tables = []
        with console.status(f"reading tracked runs of {name}"):
            boards = lb.boards(name, split, latest)
        if not boards:
            continue
        for board in boards:
            row = board.row(reference) if reference else lb.default_reference(board, metrics[0])
            with console.status(f"bootstrapping {board.dataset}/{board.split}"):
                table = lb.cells(board, metrics, row, scores)
            images = {}
            if plots:
                with console.status(f"plotting {board.dataset}/{board.split}"):
                    images = _plots(board, table, metrics, out, f"{name}_{board.split}")
            board_tables.append((board, table, images))
        md = atomic.write_text(out / f"{name}.md", render.markdown(board_tables, command))
        table_csv = atomic.write_text(out / f"{name}.csv", render.csv(board_tables))
        ignored = sum(board.ignored for board in boards)
        console.print(f"{name}: {md}, {table_csv}" + (f" and {sum(len(i) for *_, i in board_tables)} plots" if plots else "")
                      + (f"; {ignored} incomplete run(s) ignored" if ignored else ""))
        written.append(name)
    if not written:
        where = "/".join(part for part in (dataset, split) if part)
        raise BenchError(f"no tracked runs{' of ' + where if where else ''} in {tracking.tracking_uri()}; "
                         "run `bench run` first")
