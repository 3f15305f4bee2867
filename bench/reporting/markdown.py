"""Leaderboard files: the Markdown a reader sees and the CSV a script reads, from ``leaderboard.cells``.

``blocks`` is a leaderboard's content in reading order; the Markdown and the HTML page
(``bench.reporting.html_page``) are both written from it, so they say the same."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.evaluation import ceiling
from bench.evaluation.metric_catalog import GI_METRICS, METRICS
from bench.reporting import observed_interactions
from bench.reporting.leaderboard import NOT_COMMITTED, Board, Row


def _number(value: float) -> str:
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text.replace("-", "−")


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "") + _number(value)


@dataclass(frozen=True)
class Cell:
    """One cell of a metric table: mean ± sd over seeds, and the row's difference to the reference row."""

    value: str = "–"
    mean: float = np.nan
    best: bool = False
    delta: str = ""
    excludes_zero: bool = False
    detects: str = ""  # the smallest difference the comparison detects (mdd), after the star

    def markdown(self) -> str:
        text = f"**{self.value}**" if self.best else self.value
        if self.delta:
            text += f"<br>{self.delta}" + ("\\*" if self.excludes_zero else "") + self.detects
        return text


@dataclass(frozen=True)
class Line:
    """One row of a metric table."""

    label: str
    seeds: str
    runs: int
    cells: list[Cell]


@dataclass(frozen=True)
class MetricTable:
    """The table of one metric on one board: a line per row, a cell per test subgroup."""

    metric: str
    subgroups: list[str]
    lines: list[Line]


@dataclass(frozen=True)
class Image:
    """A plot, by its file name beside the leaderboard."""

    alt: str
    name: str


def _cell(line: pd.Series, seeds: int) -> Cell:
    if not line["n_seeds"]:
        return Cell()
    text = _number(line["mean"]) + (f" ± {_number(line['sd'])}" if line["n_seeds"] > 1 else "")
    text += f" (n={line['n_seeds']})" if line["n_seeds"] != seeds else ""
    if not line["n_perturbations"]:
        return Cell(text, line["mean"], bool(line["best"]))
    if line["n_perturbations"] < 2:
        return Cell(text, line["mean"], bool(line["best"]), f"Δ {_signed(line['diff'])} (one perturbation: no CI)")
    detects = f" (mdd {_number(line['detectable'])})" if np.isfinite(line["detectable"]) else ""
    return Cell(text, line["mean"], bool(line["best"]),
                f"Δ {_signed(line['diff'])} [{_signed(line['ci_low'])}, {_signed(line['ci_high'])}]",
                bool(line["ci_low"] > 0 or line["ci_high"] < 0), detects)


def _replicates(board: Board) -> str:
    """How many distinct test sets and perturbations the board's seeds hold."""
    found = board.replicates
    plural = "s" if found.sets > 1 else ""
    of = (f"{found.sets} distinct test set{plural} of {found.seeds} seeds" if found.sets < found.seeds else
          f"{found.sets} distinct test set{plural}")
    counts = ", ".join(f"{subgroup} {n}" for subgroup, n in found.distinct.items())
    return f"Test sets: {of}; distinct test perturbations over all seeds: {counts}."


def _row_label(row: Row, reference: str) -> str:
    notes = [word for word, present in (("baseline", row.baseline), ("reference", row.label == reference)) if present]
    return row.label + (f" ({', '.join(notes)})" if notes else "")


def _halvings_note(rows: list[Row]) -> str:
    """How many halvings the ceiling runs took, and their largest standard error of the headline."""
    found = [row.halvings() for row in rows]
    counts = [n for row_counts, _ in found for n in row_counts]
    errors = [se for _, se in found if np.isfinite(se)]
    if not counts or not errors:
        return "these runs do not record their halvings"
    span = str(min(counts)) if min(counts) == max(counts) else f"{min(counts)}–{max(counts)}"
    return f"here {span} halvings per seed, standard error at most {max(errors):.4f}"


def _seeds(row: Row) -> str:
    if row.skipped:
        return "skipped"
    return str(len(row.runs)) + (f" ({len(row.failed)} failed)" if row.failed else "")


def metric_table(board: Board, table: pd.DataFrame, metric: str) -> MetricTable:
    subgroups = board.subgroups
    reference = table["reference"].iloc[0] if len(table) else ""
    lines = []
    for row in board.rows:
        mine = table[(table["label"] == row.label) & (table["metric"] == metric)].set_index("subgroup")
        cells = [_cell(mine.loc[s], row.samples) if s in mine.index else Cell() for s in subgroups]
        lines.append(Line(_row_label(row, reference), _seeds(row), len(row.runs), cells))
    return MetricTable(metric, subgroups, lines)


def _markdown_table(table: MetricTable) -> list[str]:
    lines = ["| model | seeds | " + " | ".join(table.subgroups) + " |", "|---|---|" + "---|" * len(table.subgroups)]
    for line in table.lines:
        lines.append(f"| {line.label} | {line.seeds} | " + " | ".join(cell.markdown() for cell in line.cells) + " |")
    return lines + [""]


def blocks(board_tables: list[tuple[Board, pd.DataFrame, dict[str, str]]],
           command: str) -> Iterator[str | MetricTable | Image]:
    """The leaderboard of one dataset in reading order: lines of Markdown text, metric tables and plots.
    ``board_tables`` holds each board, its ``cells`` table, and the file names of its images
    (``bars:<metric>`` and ``scatter``). ``markdown`` and ``leaderboard_html.page`` both write these."""
    first = board_tables[0][0]
    yield from [
        f"# Leaderboard: {first.dataset}",
        "",
        f"Written by `{command}` from runs tracked in MLflow; do not edit by hand.",
        "",
        f"- Dataset sha256: `{first.dataset_sha256}`; metrics version {first.metrics_version}.",
        "- Cells: mean ± sd over split seeds; **bold**: the best of the column among the rows run on the most "
        "seeds (a row with fewer seeds is never bold; its bars are marked n=k). Δ: the row minus the reference "
        "row, mean over test perturbations paired by seed, with its paired bootstrap 95% CI (10,000 resamples "
        "of perturbations; Hesterberg's expanded percentile interval, which held the true difference 92–98% of "
        "the time from 10 perturbations on when models trade wins, less with fewer or strongly skewed "
        "differences: docs/statistics.md); \\* where the CI excludes 0 (differences below 1e-6 per "
        "perturbation are float32 rounding: a tie). mdd: the smallest true difference this comparison detects 80% of the time at the 5% "
        "level, 2.8 bootstrap standard errors of Δ; a Δ smaller than its mdd without a star is no evidence of "
        "equality. Δ weighs every test perturbation once (averaged over "
        "the seeds whose test set holds it), so it can differ from the difference of the seed means, which weigh "
        "seeds equally. (n=k): a subgroup present in k of the row's seeds.",
        "- A label `[preset]` names the card's preset when it is not the default (e.g. `fast` where the "
        "default takes too long on CPU); `[external]` marks predictions made outside the harness and scored "
        "with `bench score`.",
    ]
    ceilings = [row for board, _, _ in board_tables for row in board.rows if row.is_ceiling]
    if ceilings:
        yield (f"- `{ceiling.LABEL}`: the data ceiling, each test perturbation's measured effect in one random half "
               "of its cells (and of the control cells) scored as a prediction of the other half, on DE genes "
               "picked from the first half alone; each seed's value is a mean over halvings, run until the "
               f"standard error of all/{ceiling.HEADLINE} is below {ceiling.TARGET_SE} (at most "
               f"{ceiling.MOST_HALVINGS} halvings; {_halvings_note(ceilings)}); mean ± sd over split seeds; never "
               "bold. Half the cells make it conservative: a model scored against all cells can exceed it where "
               "cells are few.")
    yield ""
    for board, table, images in board_tables:
        reference = table["reference"].iloc[0] if len(table) else ""
        metrics = list(dict.fromkeys(table["metric"]))
        yield from [f"## {board.dataset} / {board.split}", ""]
        yield from ["Split files: " + ", ".join(f"`{path}`" for path in board.split_files.values()) + ".", ""]
        yield from [f"Code: commit {', '.join(f'`{c[:12]}`' for c in board.commits) or 'unknown'}.", ""]
        if board.replicates is not None:
            yield from [_replicates(board), ""]
        yield (f"Reference: **{reference}** (of the baselines with the most seeds, the best on all/{metrics[0]}, "
               "unless chosen with `--reference`)." if reference else "Reference: none (no baseline has runs here).")
        yield ""
        notes = [f"{row.label} seed {seed}: {error}" for row in board.rows for seed, error in sorted(row.failed.items())]
        notes += [f"{row.label}: skipped ({row.skipped})" for row in board.rows if row.skipped]
        made_here = [seed for seed, path in board.split_files.items() if NOT_COMMITTED in path]
        if made_here:
            notes.append(f"seed(s) {', '.join(map(str, sorted(made_here)))}: splits made on the machine that ran "
                         "them, not committed with bench: their test sets are not the committed seeds', so compare "
                         "these rows with boards made elsewhere only through the split files' sha256")
        if board.superseded:
            notes.append(f"{board.superseded} older run(s) replaced by a re-run of the same model, preset and seed")
        if board.ignored:
            notes.append(f"{board.ignored} run(s) ignored: unfinished (still running, or killed while logging) "
                         "or without per_perturbation.csv")
        if board.left_out:
            notes.append(f"{board.left_out} run(s) left out by --latest (older split files, data or cards)")
        if notes:
            yield from ["Notes:", "", *[f"- {note}" for note in notes], ""]
        for metric in metrics:
            if metric == next((m for m in metrics if m in GI_METRICS), None):
                yield from ["### gi: genetic interactions of the test doubles whose singles are observed", "",
                            "Each double's robust fit δ_AB ≈ c_A·δ_A + c_B·δ_B on its observed singles (Norman et "
                            "al. 2019) scored for the observed and the predicted double; classes: additive, "
                            "synergy, buffering, epistasis (README, \"Genetic interactions\").", ""]
                yield from observed_interactions.lines(board.observed_interactions)
            yield from [f"### {metric} ({METRICS[metric].goal})", "", METRICS[metric].definition + ".", ""]
            yield metric_table(board, table, metric)
            if f"bars:{metric}" in images:
                yield Image(f"{metric} per subgroup", images[f"bars:{metric}"])
        if "scatter" in images:
            yield from ["### Predicted vs observed change, top 20 DE genes", ""]
            yield Image("predicted vs observed change", images["scatter"])


def markdown(board_tables: list[tuple[Board, pd.DataFrame, dict[str, str]]], command: str) -> str:
    """The Markdown leaderboard of one dataset (see ``blocks``)."""
    lines = []
    for block in blocks(board_tables, command):
        if isinstance(block, MetricTable):
            lines += _markdown_table(block)
        elif isinstance(block, Image):
            lines += [f"![{block.alt}]({block.name})", ""]
        else:
            lines.append(block)
    return "\n".join(lines)


def csv(board_tables: list[tuple[Board, pd.DataFrame, dict[str, str]]]) -> str:
    """One line per (split, row, metric, subgroup), with the provenance of its runs."""
    frames = []
    for board, table, _ in board_tables:
        frame = table.copy()
        frame.insert(0, "dataset", board.dataset)
        frame["dataset_sha256"] = board.dataset_sha256
        frame["metrics_version"] = board.metrics_version
        frame["split_files"] = ";".join(board.split_files.values())
        frame["commits"] = ";".join(board.commits)
        frames.append(frame)
    result = pd.concat(frames, ignore_index=True)
    result = result.replace([np.inf, -np.inf], np.nan)
    return result.to_csv(index=False, float_format="%.6f")
