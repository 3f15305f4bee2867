"""PNG plots of a leaderboard board: a metric per test subgroup as grouped bars, and predicted against
observed change on the top-20 DE genes of a few test perturbations, one panel per (model, perturbation).

Rows are told apart by model family (``bench.plot_styles``): the same colours in every chart of a board.
Figures are drawn with matplotlib's object interface on the Agg canvas (no pyplot state), so plotting
neither needs a display nor leaks figures in a long process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench import ceiling, plot_styles, splits, tracking
from bench.atomic import replacing
from bench.conditions import CONTROL, genes_of
from bench.data.datasets import load_dataset
from bench.de import cached_de_genes
from bench.errors import BenchError
from bench.leaderboard import Board
from bench.metrics import METRICS, rowwise_pearson
from bench.split_data import SplitData
from bench.split_rules import DEFINITIONS

MAX_ROWS = 16  # rows of panels in the scatter plot; more models are named as left out in its title
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
        ax.errorbar(x[spread], height[spread], yerr=mine["sd"].to_numpy(dtype=float)[spread], fmt="none",
                    ecolor="black", elinewidth=0.8, capsize=2)
        heights.append((x, height, style))
    for x, height, style in heights:
        _zero_marks(ax, x, height, width, style)
    values = shown["mean"] - shown["sd"].fillna(0)
    if (values < 0).any():
        ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(subgroups)), subgroups)
    ax.set_xlim(-0.5, len(subgroups) - 0.5)
    ax.set_ylabel(f"{metric} ({METRICS[metric].goal})")
    spread_of = " (the ceiling: seeds and halvings)" if ceiling.LABEL in labels else ""
    ax.set_title(f"{title}: {metric}, mean ± sd over seeds{spread_of}")
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    ax.set_axisbelow(True)
    if labels:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.text(0, -0.1, caption(subgroups, counts), transform=ax.transAxes, va="top", ha="left", fontsize=8,
            linespacing=1.4)
    return figure


def bars(table: pd.DataFrame, metric: str, path: Path, title: str,
         counts: dict[str, tuple[int, int]] | None = None) -> Path:
    """Grouped bars of ``metric`` per test subgroup and row, from one board's ``leaderboard.cells``
    table; rows without a value are left out. A caption below says what each subgroup holds and, with
    ``counts`` (``leaderboard.perturbation_counts``), how many test perturbations. Colours go by model
    family (``plot_styles``). Written atomically; returns ``path``."""
    return _save(bars_figure(table, metric, title, counts), path)


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


def _split_of(run: pd.Series, folder: Path) -> splits.Split:
    path = tracking.run_artifact(run["run_id"], "split.json", folder)
    if path is None:
        raise BenchError(f"run {run['run_id']} has no split.json artifact")
    split = splits.Split.from_json(path.read_text(), where=f"split.json of run {run['run_id']}")
    if split.sha256 != run.get("tags.split_sha256"):
        raise BenchError(f"split.json of run {run['run_id']} has sha256 {split.sha256[:12]}, "
                         f"but the run was tagged with {str(run.get('tags.split_sha256'))[:12]}")
    return split


def _predictions(run: pd.Series, folder: Path) -> pd.DataFrame | None:
    """A run's predicted means indexed by (cell_type, condition); None without the artifact."""
    path = tracking.run_artifact(run["run_id"], "predictions.h5ad", folder / run["run_id"])
    if path is None:
        return None
    adata = ad.read_h5ad(path)
    index = pd.MultiIndex.from_arrays([adata.obs["cell_type"].astype(str), adata.obs["condition"].astype(str)])
    return pd.DataFrame(np.asarray(adata.X), index=index, columns=adata.var_names)


def _observed_changes(data: SplitData, de20: dict) -> tuple[dict[str, pd.Series], dict, dict]:
    """The training-control mean per cell type, and per test (cell_type, condition) its DE genes and the
    observed change of its test cells on them."""
    control = {ct: means.loc[CONTROL] for ct, means in data.means("train").items()}
    observed, genes = {}, {}
    for cell_type, means in data.means("test").items():
        for condition in means.index:
            key = (cell_type, condition)
            genes[key] = de20[cell_type][condition]
            observed[key] = (means.loc[condition] - control[cell_type])[genes[key]].to_numpy()
    return control, observed, genes


def _panel(ax, x: np.ndarray, y: np.ndarray | None, perturbed: np.ndarray, limits: tuple[float, float],
           heading: str) -> None:
    ax.plot(limits, limits, color="grey", linewidth=0.8, linestyle="--")
    ax.axhline(0, color="lightgrey", linewidth=0.5)
    ax.axvline(0, color="lightgrey", linewidth=0.5)
    ax.set_xlim(limits)
    ax.set_ylim(limits)
    ax.tick_params(labelsize=7)
    if y is None:
        ax.set_title(heading + "not predicted", fontsize=8)
        return
    ax.scatter(x[~perturbed], y[~perturbed], s=12, color="tab:blue")
    ax.scatter(x[perturbed], y[perturbed], s=18, color="tab:orange")
    ax.set_title(heading + f"r = {rowwise_pearson(x[None], y[None])[0]:.2f}", fontsize=8)


def scatter(board: Board, path: Path, title: str, max_perturbations: int = 4) -> Path | None:
    """Predicted against observed change from the training controls on the top-20 DE genes of one test
    perturbation per subgroup (the largest observed change), one row of panels per model, on the lowest
    seed with a finished run. None when no run of that seed has predictions. Written atomically."""
    seeds = sorted({seed for row in board.rows for seed in row.runs})
    if not seeds:
        return None
    seed = seeds[0]
    ran = [row for row in board.rows if seed in row.runs]
    rows = ran[:MAX_ROWS]
    with tempfile.TemporaryDirectory(prefix="bench-plots-") as folder:
        split = _split_of(rows[0].runs[seed], Path(folder))
        predictions = [(row.label, _predictions(row.runs[seed], Path(folder))) for row in rows]
    predictions = [(label, frame) for label, frame in predictions if frame is not None]
    if not predictions:
        return None
    dataset = load_dataset(board.dataset, counts=False)
    de20 = cached_de_genes(dataset.adata, dataset.name, dataset.sha256)
    control, observed, genes = _observed_changes(splits.apply(split, dataset.adata), de20)
    chosen = choose_perturbations(observed, split.test, max_perturbations)
    several_types = len({ct for ct, _ in observed}) > 1
    figure = Figure(figsize=(2.6 * len(chosen) + 1.2, 2.4 * len(predictions) + 1.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(predictions), len(chosen), squeeze=False)
    for j, key in enumerate(chosen):
        cell_type, condition = key
        # at the float32 of the stored predictions, so that predicting the control shows no change
        # rather than rounding noise
        reference = control[cell_type].astype(np.float32)
        ys = [(frame.loc[key] - reference)[genes[key]].to_numpy(dtype=float) if key in frame.index else None
              for _, frame in predictions]
        span = np.concatenate([observed[key], *[y for y in ys if y is not None]])
        pad = 0.05 * (np.ptp(span) or 1.0)
        limits = (span.min() - pad, span.max() + pad)
        perturbed = np.isin(genes[key], genes_of(condition))
        name = f"{cell_type}: {condition}" if several_types else condition
        for i, ((label, _), y) in enumerate(zip(predictions, ys)):
            heading = f"{name} ({split.test[condition]})\n" if i == 0 else ""
            _panel(axes[i, j], observed[key], y, perturbed, limits, heading)
            if j == 0:
                axes[i, j].set_ylabel(f"{label}\npredicted", fontsize=8)
        axes[-1, j].set_xlabel("observed", fontsize=8)
    left_out = f"\n(not shown: {', '.join(row.label for row in ran[MAX_ROWS:])})" if len(ran) > MAX_ROWS else ""
    figure.suptitle(f"{title}, seed {seed}: change from control on the top-20 DE genes (orange: a perturbed gene)"
                    + left_out)
    return _save(figure, path)
