"""``bench leaderboard``: Markdown, CSV and HTML tables (and PNG plots) from the runs tracked in MLflow."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from bench.cli.common import HEADLINE, console, err_console
from bench.core import outputs
from bench.core.errors import BenchError
from bench.core.progress import busy
from bench.core.redaction import redact


@contextlib.contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A new hidden folder inside ``out`` to write into. When the block succeeds, its files replace their
    namesakes in ``out`` all together (``_swap``); when it fails, ``out`` keeps its old files, and the folders
    made for it are removed. Creating it is also the check that ``out`` is a writable folder, before
    anything is drawn."""
    made = [folder for folder in (out, *out.parents) if not folder.exists()]  # deepest first
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".leaderboard-", dir=out))
        except OSError as exc:
            reason = "it is a file, not a folder" if out.is_file() else exc.strerror.lower()
            raise BenchError(f"cannot write leaderboards to {out}: {reason}; pass --out a writable folder") from None
        try:
            with outputs.writing(out, "leaderboards"):
                yield staging
                _swap(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _swap(staging: Path, out: Path) -> None:
    """Move the files of ``staging`` into ``out`` (tables last), all or none: each old namesake is moved
    aside into ``staging`` first, and put back when a later file cannot be moved in. A folder where a file
    would go is refused before anything moves."""
    new = sorted(staging.iterdir(), key=lambda path: path.suffix in (".md", ".csv", ".html"))
    for path in new:
        if (out / path.name).is_dir():
            raise BenchError(f"cannot write leaderboards to {out}: {path.name} there is a folder; move it away "
                             "or pass --out another folder")
    aside = staging / ".old"
    aside.mkdir()
    moved: list[tuple[str, bool]] = []  # (name, whether an old file was moved aside)
    try:
        for path in new:
            target = out / path.name
            old = target.exists() or target.is_symlink()
            if old:
                os.replace(target, aside / path.name)
            moved.append((path.name, old))
            os.replace(path, target)
    except OSError:
        for name, old in reversed(moved):
            with contextlib.suppress(OSError):
                if old:
                    os.replace(aside / name, out / name)
                elif not (staging / name).exists():  # it was moved in
                    (out / name).unlink()
        raise


def _check_writable(out: Path) -> None:
    """Refuse an ``--out`` that cannot become a writable folder before any run is read (``_staged`` checks
    again when it writes)."""
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                reason = "it is a file, not a folder" if folder == out else "not a directory"
            elif not os.access(folder, os.W_OK):
                reason = "permission denied"
            else:
                return
            raise BenchError(f"cannot write leaderboards to {out}: {reason}; pass --out a writable folder")


def _plots(board, table, metrics: list[str], out: Path, stem: str, scores) -> dict[str, str]:
    """Bar plots per metric and the scatter plot; the file names written, by ``bars:<metric>``/``scatter``."""
    from bench.reporting import leaderboard as lb
    from bench.reporting import plots
    from bench.workflows import leaderboard_inputs

    images = {}
    title = f"{board.dataset} / {board.split}"
    counts = lb.perturbation_counts(board, scores)
    for metric in metrics:
        path = out / f"{stem}_bars_{metric}.png"
        plots.bars(table[table["metric"] == metric], metric, path, title, counts=counts)
        images[f"bars:{metric}"] = path.name
    try:
        data = leaderboard_inputs.scatter_data(board, metrics[0])
    except BenchError as exc:
        err_console.print(f"warning: no scatter plot for {title}: {exc}", markup=False, highlight=False)
        return images
    if data is not None:
        images["scatter"] = plots.scatter(data, out / f"{stem}_scatter.png", title, metric=metrics[0]).name
    return images


def leaderboard(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset (default: every tracked one).")] = None,
    split: Annotated[str | None, typer.Option("--split", "-s", help="Only this split setting.")] = None,
    metric: Annotated[str, typer.Option("--metric", help="Metrics, comma-separated; the first picks the reference.")] = HEADLINE,
    reference: Annotated[str | None, typer.Option(help="Reference row (model, or 'model [preset]'); default: the best baseline of those with the most seeds.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for <dataset>.md, .csv, .html and the PNG plots.")] = Path("leaderboards"),
    latest: Annotated[bool, typer.Option("--latest", help="Keep only runs matching the newest split files, data, metrics and cards.")] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the PNG plots.")] = True,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Write <dataset>.html: tables, plots and provenance in one page.")] = True,
) -> None:
    """Write leaderboards (Markdown, CSV, HTML, PNG) from tracked runs: mean ± sd over seeds, paired bootstrap CIs."""
    from bench.evaluation import metric_catalog
    from bench.evaluation import split_settings

    metrics = metric_catalog.check_names([m.strip() for m in metric.split(",") if m.strip()])
    if not metrics:
        raise BenchError("--metric names no metric; see `bench list metrics`")
    if split is not None:
        split_settings.check_name(split)
    _check_writable(out)
    from bench.reporting import html_page as leaderboard_html  # pandas, matplotlib, MLflow: after the quick checks
    from bench.reporting import leaderboard as lb
    from bench.reporting import markdown as render
    from bench.reporting import observed_interactions
    from bench.workflows import leaderboard_inputs, tracking

    tracking.check_store()
    datasets = [dataset] if dataset else tracking.tracked_datasets()
    command = shlex.join(["bench", *sys.argv[1:]]) if sys.argv[1:2] == ["leaderboard"] else "bench leaderboard"
    found, scores = {}, leaderboard_inputs.scores()
    for name in datasets:
        with busy(console, f"reading tracked runs of {name}"):
            found[name] = leaderboard_inputs.boards(name, split, latest, scores)
    found = {name: boards for name, boards in found.items() if boards}
    if not found:
        where = "/".join(part for part in (dataset, split) if part)
        raise BenchError(f"no tracked runs{' of ' + where if where else ''} in {redact(tracking.tracking_uri())}; "
                         "run `bench run` first")
    written = []
    with _staged(out) as staging:
        for name, boards in found.items():
            board_tables = []
            for board in boards:
                row = board.row(reference) if reference else lb.default_reference(board, metrics[0])
                shown = metrics + [m for m in metric_catalog.GI_METRICS if m not in metrics and board.has(m)]
                with busy(console, f"bootstrapping {board.dataset}/{board.split}"):
                    table = lb.table_cells(board, shown, row, scores)
                    board.replicates = lb.replicates(board, scores)
                    board.observed_interactions = observed_interactions.table(board, scores)
                images = {}
                if plots and board.rows:  # a board whose every run was ignored has nothing to draw
                    with busy(console, f"plotting {board.dataset}/{board.split}"):
                        images = _plots(board, table, shown, staging, f"{name}_{board.split}", scores)
                board_tables.append((board, table, images))
            (staging / f"{name}.md").write_text(render.markdown(board_tables, command))
            (staging / f"{name}.csv").write_text(render.csv(board_tables))
            if html:
                page = leaderboard_html.page(board_tables, command, staging)
                (staging / f"{name}.html").write_text(page, encoding="utf-8")
            ignored = sum(board.ignored for board in boards)
            written.append(f"{name}: {out / name}.md, {out / name}.csv" + (f", {out / name}.html" if html else "")
                           + (f" and {sum(len(i) for *_, i in board_tables)} plots" if plots else "")
                           + (f"; {ignored} incomplete run(s) ignored" if ignored else ""))
    for line in written:
        console.print(line)
