"""Figures and Markdown of the calibration study (``scripts/calibrate_statistics.py``): ``docs/statistics.md``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

FIGURES = ("oracles.png", "coverage.png", "power.png")
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def oracle_figure(path: Path, per_seed: pd.DataFrame, sigmas: list[float]) -> None:
    """Each oracle's ``all/<metric>`` on every split seed (one line per seed)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(len(sigmas)), per_seed.to_numpy().T, color="grey", alpha=0.3, lw=0.8)
    ax.plot(range(len(sigmas)), per_seed.mean().to_numpy(), color="black", marker="o", lw=2, label="mean over seeds")
    ax.set_xticks(range(len(sigmas)), [f"σ={s:.3f}" for s in sigmas])
    ax.set_ylabel("all/pearson_delta_de20")
    ax.set_title("Oracles on each split seed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def coverage_figure(path: Path, panels: dict[str, dict[str, pd.DataFrame]]) -> None:
    """Coverage of the 95% interval against n, one panel per family of differences: before the expansion
    (dashed) and now."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), sharey=True, squeeze=False)
    for ax, (title, coverage) in zip(axes[0], panels.items()):
        ax.axhspan(0.93, 0.97, color="green", alpha=0.15, label="93–97%")
        for (label, table), color in zip(coverage.items(), COLORS):
            ax.plot(table["n"], table["expanded"], marker="o", color=color, label=f"{label}: now (expanded)")
            ax.plot(table["n"], table["percentile"], marker="x", ls="--", color=color, label=f"{label}: before")
        _log_n(ax)
        ax.set_title(title)
        ax.set_ylim(0.5, 1.0)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("share of 95% CIs holding the true Δ")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def power_figure(path: Path, panels: dict[str, dict[str, pd.DataFrame]], formula: dict[str, float]) -> None:
    """Share of CIs above zero against n, one panel per family; the formula's n for 80% dotted."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), sharey=True, squeeze=False)
    for ax, (title, power) in zip(axes[0], panels.items()):
        ax.axhline(0.8, color="black", lw=0.8)
        for (label, table), color in zip(power.items(), COLORS):
            ax.plot(table["n"], table["power"], marker="o", color=color, label=label)
            if np.isfinite(formula[label]):
                ax.axvline(formula[label], color=color, ls=":", lw=1)
        _log_n(ax)
        ax.set_title(title)
        ax.legend(fontsize=8, title="dotted: n from `detectable`", title_fontsize=8)
    axes[0][0].set_ylabel("share of CIs above 0 (power)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _log_n(ax) -> None:
    """A log axis of n, labelled with plain numbers."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("test perturbations n")


def table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a Markdown table, numbers rounded."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---:" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _cell(value, digits: int) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}" if np.isfinite(value) else "–"
    return str(value)
