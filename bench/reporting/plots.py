"""PNG plots of a leaderboard board: a metric per test subgroup as grouped bars, and predicted against
observed change on the top-20 DE genes of a few test perturbations, one panel per (model, perturbation).

Rows are told apart by model family (``bench.reporting.plot_styles``): the same colours in every chart of a board.
The scatter plot draws what ``bench.workflows.leaderboard_inputs.scatter_data`` reads (the split, the runs'
predictions, the observed change on the DE genes) as plain tables (``ScatterData``).
Figures are drawn with matplotlib's object interface on the Agg canvas (no pyplot state), so plotting
neither needs a display nor leaks figures in a long process.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.core.atomic import replacing
from bench.core.conditions import genes_of
from bench.core.registry import all_cards
from bench.evaluation.metric_catalog import METRICS
from bench.evaluation.metrics import rowwise_pearson
from bench.evaluation.split_rules import DEFINITIONS
from bench.reporting import figure_cache, plot_styles
from bench.reporting.leaderboard import Board, Row

MAX_ROWS = 8  # rows of panels in the scatter plot; with more models, the best of each family is shown
NAMED_GENES = 3  # genes named in each scatter panel: those with the largest observed change
ALL = "every test perturbation"
ZERO = 0.006  # a bar shorter than this share of the axis gets a mark (at 4.5 in and 110 dpi: under 3 pixels)


def _save(figure: Figure, path: Path) -> Path:
    with replacing(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
    return path


def caption(subgroups: list[str], counts: dict[str, tuple[int, int]] | None = None) -> str:
    """What each test subgroup holds, one line each, with its number of test perturbations in a split
    seed (``leaderboard.perturbation_counts``) where ``counts`` has it."""
    lines = ["Test subgroups" + (" (n: test perturbations in a split seed)" if counts else "") + ":"]
    for subgroup in subgroups:
        low, high = (counts or {}).get(subgroup, (None, None))
        n = "" if low is None else f" (n = {low})" if low == high else f" (n = {low}–{high})"
        definition = ALL if subgroup == "all" else DEFINITIONS.get(subgroup, "")
        lines.append(f"{subgroup}{n}" + (f": {definition}" if definition else ""))
    return "\n".join(lines)


def _zero_marks(ax, x: np.ndarray, height: np.ndarray, width: float, style: plot_styles.Style) -> None:
    """A thin line in the row's colour where a bar is too short to see (e.g. the control baseline's
    correlation of exactly 0), so that a zero reads as a value rather than as a missing bar."""
    low, high = ax.get_ylim()
    flat = np.isfinite(height) & (np.abs(height) < ZERO * (high - low))
    if flat.any():
        ax.hlines(height[flat], x[flat] - width / 2, x[flat] + width / 2, colors=[style.face], linewidth=2.5,
                  zorder=3, path_effects=[patheffects.withStroke(linewidth=4.0, foreground=style.edge)])


def _clipped_sd(mean: np.ndarray, sd: np.ndarray, metric: str) -> np.ndarray:
    """The error bars' lengths below and above each mean: one sd, cut at the values the metric can take (a
    probability's bar stops at 1)."""
    low, high = METRICS[metric].bounds
    return np.vstack([np.clip(np.minimum(sd, mean - low), 0, None), np.clip(np.minimum(sd, high - mean), 0, None)])


def _fewer_seeds_marks(ax, x: np.ndarray, ends: np.ndarray, seeds: np.ndarray, most: np.ndarray) -> None:
    """``n=k`` beyond the end of a bar (and of its error bar) that rests on fewer seeds than the most any bar of
    its subgroup has, so that a one-seed bar without an error bar does not read as a sure one."""
    for xi, end, n, top in zip(x, ends, seeds, most):
        if np.isfinite(end) and n < top:
            ax.annotate(f"n={int(n)}", (xi, end), xytext=(0, 2 if end >= 0 else -2), textcoords="offset points",
                        ha="center", va="bottom" if end >= 0 else "top", fontsize=6, rotation=90)


def bars_figure(table: pd.DataFrame, metric: str, title: str,
                counts: dict[str, tuple[int, int]] | None = None) -> Figure:
    """The grouped bar chart of ``bars``, not yet saved."""
    subgroups = list(dict.fromkeys(table["subgroup"]))
    subgroups.sort(key=lambda s: s != "all")  # stable: 'all' first, the rest in table order
    styles = plot_styles.styles(table)
    shown = table[table["n_seeds"] > 0]
    labels = list(dict.fromkeys(shown["label"]))
    width = 0.8 / max(len(labels), 1)
    figure = Figure(figsize=(min(4 + 0.25 * len(subgroups) * len(labels), 30), 4.5))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    heights = []
    for i, label in enumerate(labels):
        mine = shown[shown["label"] == label].set_index("subgroup").reindex(subgroups)
        x = np.arange(len(subgroups)) - 0.4 + (i + 0.5) * width
        height = mine["mean"].to_numpy(dtype=float)
        style = styles[label]
        ax.bar(x, height, width, color=style.face, edgecolor=style.edge, linewidth=0.6, hatch=style.hatch,
               label=label)
        spread = (mine["n_seeds"] >= 2).to_numpy() & np.isfinite(height)
        error = _clipped_sd(height, mine["sd"].to_numpy(dtype=float), metric)
        ax.errorbar(x[spread], height[spread], yerr=error[:, spread], fmt="none", ecolor="black", elinewidth=0.8,
                    capsize=2)
        ends = np.where(height >= 0, height + np.where(spread, error[1], 0), height - np.where(spread, error[0], 0))
        heights.append((x, height, style, mine["n_seeds"].to_numpy(dtype=float), ends))
    most = shown.groupby("subgroup")["n_seeds"].max().reindex(subgroups).to_numpy(dtype=float)
    for x, height, style, seeds, ends in heights:
        _zero_marks(ax, x, height, width, style)
        _fewer_seeds_marks(ax, x, ends, seeds, most)
    values = shown["mean"] - shown["sd"].fillna(0)
    if (values < 0).any():
        ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(subgroups)), subgroups)
    ax.set_xlim(-0.5, len(subgroups) - 0.5)
    ax.set_ylabel(f"{metric} ({METRICS[metric].goal})")
    ax.set_title(f"{title}: {metric}, mean ± sd over seeds")
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    ax.set_axisbelow(True)
    if labels:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.text(0, -0.1, caption(subgroups, counts), transform=ax.transAxes, va="top", ha="left", fontsize=8,
            linespacing=1.4)
    return figure


def bars(table: pd.DataFrame, metric: str, path: Path, title: str,
         counts: dict[str, tuple[int, int]] | None = None) -> Path:
    """Grouped bars of ``metric`` per test subgroup and row, from one board's ``leaderboard.table_cells``
    table; rows without a value are left out. A caption below says what each subgroup holds and, with
    ``counts`` (``leaderboard.perturbation_counts``), how many test perturbations. Colours go by model
    family (``plot_styles``). Written atomically (copied from the cache when drawn before); returns ``path``."""
    return figure_cache.drawn(path, ("bars", table, metric, title, counts),
                              lambda to: _save(bars_figure(table, metric, title, counts), to))


def choose_perturbations(
    observed_change: dict[tuple[str, str], np.ndarray], subgroups: dict[str, str], max_n: int
) -> list[tuple[str, str]]:
    """Per test subgroup (by name), the (cell_type, condition) whose observed change on its DE genes has
    the largest norm, ties broken by name; at most ``max_n``."""
    best: dict[str, tuple[float, tuple[str, str]]] = {}
    for key in sorted(observed_change):
        norm = float(np.linalg.norm(observed_change[key]))
        group = subgroups[key[1]]
        if group not in best or norm > best[group][0]:
            best[group] = (norm, key)
    return [best[group][1] for group in sorted(best)][:max_n]


@dataclass
class Panel:
    """One column of the scatter plot: a test perturbation's DE genes, their observed change, and each
    shown row's predicted change (None where the row has no prediction for it)."""

    heading: str
    genes: np.ndarray
    observed: np.ndarray
    perturbed: np.ndarray  # whether each gene is one the condition perturbs
    predicted: list[np.ndarray | None]


def _draw_panel(ax, panel: Panel, y: np.ndarray | None, limits: tuple[float, float], heading: str) -> None:
    x = panel.observed
    ax.plot(limits, limits, color="grey", linewidth=0.8, linestyle="--")
    ax.axhline(0, color="lightgrey", linewidth=0.5)
    ax.axvline(0, color="lightgrey", linewidth=0.5)
    ax.set_xlim(limits)
    ax.set_ylim(limits)
    ax.tick_params(labelsize=7)
    if y is None:
        ax.set_title(heading + "not predicted", fontsize=8)
        return
    ax.scatter(x[~panel.perturbed], y[~panel.perturbed], s=12, color="tab:blue")
    ax.scatter(x[panel.perturbed], y[panel.perturbed], s=18, color="tab:orange")
    low, high = limits
    for i in np.argsort(-np.abs(x), kind="stable")[:NAMED_GENES]:
        right, top = (x[i] - low) / (high - low) > 0.75, (y[i] - low) / (high - low) > 0.85  # name inwards
        ax.annotate(panel.genes[i], (x[i], y[i]), xytext=(-3 if right else 3, -3 if top else 3),
                    textcoords="offset points", ha="right" if right else "left", va="top" if top else "bottom",
                    fontsize=6.5)
    ax.set_title(heading + f"r = {rowwise_pearson(x[None], y[None])[0]:.2f}", fontsize=8)


def scatter_figure(labels: list[str], panels: list[Panel], title: str) -> Figure:
    """The panels of ``scatter``, one row per label, not yet saved."""
    figure = Figure(figsize=(2.6 * len(panels) + 1.2, 2.4 * len(labels) + 1.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(labels), len(panels), squeeze=False)
    for j, panel in enumerate(panels):
        span = np.concatenate([panel.observed, *[y for y in panel.predicted if y is not None]])
        pad = 0.05 * (np.ptp(span) or 1.0)
        limits = (span.min() - pad, span.max() + pad)
        for i, (label, y) in enumerate(zip(labels, panel.predicted)):
            _draw_panel(axes[i, j], panel, y, limits, panel.heading + "\n" if i == 0 else "")
            if j == 0:
                axes[i, j].set_ylabel(f"{label}\npredicted", fontsize=8)
        axes[-1, j].set_xlabel("observed", fontsize=8)
    width = int(11 * figure.get_figwidth())  # characters of the title's font across the figure
    figure.suptitle("\n".join(line for part in title.split("\n") for line in textwrap.wrap(part, width)))
    return figure


def choose_rows(rows: list[Row], metric: str, max_rows: int = MAX_ROWS) -> tuple[list[Row], list[Row]]:
    """The rows the scatter plot shows, and those it leaves out, each in board order. All model rows
    (not the ceiling, which predicts nothing) when at most ``max_rows``; otherwise the best row of each
    family (``plot_styles``; the baselines are one) by ``all/<metric>``, and if those are still too many,
    the best families."""
    rows = [row for row in rows if not row.is_ceiling]
    if len(rows) <= max_rows:
        return rows, []
    cards = all_cards()

    def score(row: Row) -> float:
        value = METRICS[metric].sign * row.value("all", metric).mean
        return value if np.isfinite(value) else -np.inf

    best: dict[str, Row] = {}
    for row in rows:
        family = plot_styles.family_of(row.model, row.baseline, cards)
        if family not in best or score(row) > score(best[family]):
            best[family] = row
    kept = {id(row) for row in sorted(best.values(), key=score, reverse=True)[:max_rows]}
    return [row for row in rows if id(row) in kept], [row for row in rows if id(row) not in kept]


def left_out_note(shown: list[Row], left_out: list[Row], metric: str) -> str:
    """The scatter title's line on the rows ``choose_rows`` left out (empty when none); labels keep their
    spaces unbroken when the title is wrapped."""
    if not left_out:
        return ""
    cards = all_cards()
    shown_families, left_families = ({plot_styles.family_of(row.model, row.baseline, cards) for row in group}
                                     for group in (shown, left_out))
    best = f" (the {len(shown)} best families)" if left_families - shown_families else ""
    names = ", ".join(row.label.replace(" ", "\N{NO-BREAK SPACE}") for row in left_out)
    return (f"one row per model family (a card and those extending it; the baselines as one){best}: its best on "
            f"all/{metric} ({METRICS[metric].goal}); not shown: {names}")


@dataclass
class ScatterData:
    """What the scatter plot of one board draws, as plain tables: the seed, the rows chosen
    (``scatter_rows``), the split's test conditions with their subgroups, each chosen row's predicted means
    by (cell_type, condition) (rows without predictions left out), the training-control mean per cell type,
    and per test (cell_type, condition) its DE genes and the observed change of its test cells on them."""

    seed: int
    rows: list[Row]
    left_out: list[Row]
    test: dict[str, str]
    predictions: list[tuple[str, pd.DataFrame]]
    control: dict[str, pd.Series]
    observed: dict[tuple[str, str], np.ndarray]
    genes: dict[tuple[str, str], list[str]]


def scatter_rows(board: Board, metric: str) -> tuple[int, list[Row], list[Row]] | None:
    """The seed the scatter plot shows (the lowest with a model's run) and the rows it shows and leaves
    out (``choose_rows``); None when no model has runs."""
    seeds = sorted({seed for row in board.rows for seed in row.runs if not row.is_ceiling})
    if not seeds:
        return None
    rows, left_out = choose_rows([row for row in board.rows if seeds[0] in row.runs], metric)
    return seeds[0], rows, left_out


def scatter(data: ScatterData, path: Path, title: str, max_perturbations: int = 4,
            metric: str = "pearson_delta_de20") -> Path:
    """Predicted against observed change from the training controls on the top-20 DE genes of one test
    perturbation per subgroup (the largest observed change), one row of panels per model (with more
    than ``MAX_ROWS``, the best of each family on ``all/<metric>``: ``choose_rows``), on the lowest seed
    with a finished run; the genes of the largest observed changes are named. Written atomically (copied from
    the cache when drawn before)."""
    return figure_cache.drawn(path, ("scatter", data, title, max_perturbations, metric),
                              lambda to: _scatter(data, to, title, max_perturbations, metric))


def _scatter(data: ScatterData, path: Path, title: str, max_perturbations: int, metric: str) -> Path:
    several_types = len({ct for ct, _ in data.observed}) > 1
    panels = []
    for key in choose_perturbations(data.observed, data.test, max_perturbations):
        cell_type, condition = key
        genes = data.genes[key]
        # at the float32 of the stored predictions, so that predicting the control shows no change
        # rather than rounding noise
        reference = data.control[cell_type].astype(np.float32)
        name = f"{cell_type}: {condition}" if several_types else condition
        panels.append(Panel(
            heading=f"{name} ({data.test[condition]})", genes=np.asarray(genes), observed=data.observed[key],
            perturbed=np.isin(genes, genes_of(condition)),
            predicted=[(frame.loc[key] - reference)[genes].to_numpy(dtype=float) if key in frame.index
                       else None for _, frame in data.predictions]))
    heading = (f"{title}, seed {data.seed}: change from control on the top-20 DE genes (orange: a perturbed gene; "
               f"named: the {NAMED_GENES} largest observed changes)")
    note = left_out_note(data.rows, data.left_out, metric)
    figure = scatter_figure([label for label, _ in data.predictions], panels, heading + ("\n" + note if note else ""))
    return _save(figure, path)
