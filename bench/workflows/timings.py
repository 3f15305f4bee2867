"""Roughly how long a run will take, from the timings recorded in the catalog (``timings.csv``): seconds
per run of a card and preset on a device, measured with ``bench run`` on a named dataset. On another
dataset the time is scaled by its cells × genes (the matrices a run reads grow so), a rough figure
that the announcement calls an estimate."""

from __future__ import annotations

import csv
from dataclasses import dataclass

from bench.core import paths
from bench.core.progress import duration
from bench.core.registry import DEFAULT_PRESET, preset_label

LONG_S = 60.0  # runs expected to take less in all are not announced
FILE = "timings.csv"


@dataclass(frozen=True)
class Timing:
    model: str
    preset: str
    device: str
    dataset: str
    cells: int
    genes: int
    threads: int
    seconds: float
    measured: str


def recorded() -> list[Timing]:
    path = paths.catalog_dir() / FILE
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [Timing(row["model"], row["preset"], row["device"], row["dataset"], int(row["cells"]),
                       int(row["genes"]), int(row["threads"]), float(row["seconds"]), row["measured"])
                for row in csv.DictReader(handle)]


def per_run(model: str, preset: str | None, device: str, dataset: str, cells: int, genes: int,
            timings: list[Timing] | None = None) -> tuple[float, Timing] | None:
    """Expected seconds of one run and the timing it comes from (that dataset's when recorded, else the
    largest one scaled by cells × genes); None when the card has no timing for this preset and device."""
    preset = preset or DEFAULT_PRESET
    mine = [t for t in (recorded() if timings is None else timings)
            if (t.model, t.preset, t.device) == (model, preset, device)]
    if not mine:
        return None
    same = [t for t in mine if t.dataset == dataset]
    timing = same[0] if same else max(mine, key=lambda t: t.cells * t.genes)
    scale = 1.0 if same else cells * genes / (timing.cells * timing.genes)
    return timing.seconds * scale, timing


def announcement(models: list[str], preset: str | None, device: str, dataset: str, shape: tuple[int, int],
                 seeds: int, jobs: int, timings: list[Timing] | None = None, slowdown: float = 1.0,
                 busy: float = 0.0) -> str | None:
    """One line saying about how long ``seeds`` runs of each model take, ``jobs`` at a time; None when
    the known part takes under ``LONG_S``. The timings were measured on quiet cores: beside ``busy`` cores of
    other work the total is ``slowdown`` times longer (``threads.slowdown``), and the line says so."""
    parts, sources, unknown, total = [], set(), [], 0.0
    for model in models:
        found = per_run(model, preset, device, dataset, *shape, timings=timings)
        if found is None:
            unknown.append(model)
            continue
        seconds, timing = found
        total += seconds * seeds
        sources.add(timing.dataset)
        if seconds >= 1:
            parts.append(f"{preset_label(model, preset or DEFAULT_PRESET)} ~{duration(seconds)}")
    if total / jobs * slowdown < LONG_S:
        return None
    scaled = sorted(sources - {dataset})
    basis = f"scaled by cells × genes from {', '.join(scaled)}" if scaled else f"measured on {dataset}"
    quiet = duration(total / jobs)
    load = (f": {quiet} on quiet cores, × {slowdown:.1f} for the {busy:.1f} cores other work keeps busy now"
            if slowdown >= 1.1 else "")
    line = (f"expected: about {duration(total / jobs * slowdown)} for {len(models) * seeds} run(s), {jobs} at a "
            f"time, on {device}{load} ({', '.join(parts)} per run on quiet cores; {basis}, bench/catalog/{FILE})")
    return line + (f"; no recorded timing for {', '.join(unknown)}" if unknown else "")
