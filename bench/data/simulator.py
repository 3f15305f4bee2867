"""A seeded simulator of a Perturb-seq screen with a planted ground truth: the ``synthetic`` dataset.

Generative model (natural-log scale; gene g, cell c of cell type t in condition p):

* Gene programs: a share ``background_fraction`` of genes is unassigned background (module -1); the
  others are split into ``n_modules`` modules of roughly equal size (Dirichlet proportions), placed at
  random gene positions. A module gene has a loading ``w_g ~ U(0.5, 1.5)``; background genes have 0.
* Baseline: gene proportions ``π_g ∝ exp(N(0, baseline_sd))`` (means spanning orders of magnitude);
  every cell type but ``type_0`` shifts them by ``N(0, cell_type_sd)`` per gene.
* Cells: latent module activities ``a_cm ~ N(0, activity_sd)`` (genes of a module co-vary, in control
  cells too), a library size ``L_c = library_size · exp(N(0, library_sd))`` and a response strength
  ``s_c = max(0, N(1, response_sd))`` scaling the perturbation's effect in that cell.
* Perturbations (CRISPRa-like; targets are measured genes from the less expressed half): a perturbed
  gene A acts on ``min(n_modules, 1 + Poisson(modules_per_perturbation - 1))`` modules, each up or down
  by ``effect_size · U(0.5, 1.5)``; every cell type but ``type_0`` scales a module's effect by a gain
  ``exp(N(0, cell_type_sd))``. Its downstream log-fold change is ``D_A,g = w_g · e_A,m(g) + ε_A,g`` with
  gene-specific noise ``ε ~ N(0, gene_noise_sd)``; the target itself rises by a further ``target_effect``.
* Doubles combine downstream effects by a planted interaction type: ``additive`` D_A + D_B, ``synergy``
  ``synergy_factor · (D_A + D_B)``, ``buffering`` ``buffering_factor · (D_A + D_B)``, ``epistasis`` the
  dominant gene's D alone; both targets rise in every case. A share ``double_mix`` of doubles has two,
  one or no genes with a single in the screen; genes without a single are perturbed genes too.
* Counts: ``μ_cg = L_c · π_tg · exp(w_g · a_c,m(g) + s_c · Δ_pg)`` (Δ the condition's log-fold change,
  0 for controls), negative binomial with mean μ and variance ``μ + φ_g μ²``, ``φ_g = dispersion ·
  exp(N(0, 0.5))``; ``X = log1p(normalize_total(counts, 1e4))``. Controls are a share
  ``control_fraction`` of cells, the rest is split equally among the conditions, and cell types are
  balanced within every condition.

Ground truth is in ``uns['simulation']``: the parameters, ``gene_module``, ``gene_loading``,
``perturbed_genes`` with their ``module_effect`` (genes x modules, before cell-type gains),
``interaction`` and ``dominant`` (double -> type / masking gene), and ``lfc`` (cell types x
``conditions`` x genes): the true log-fold change Δ of the expected count relative to control.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.core.conditions import CONTROL, canonical
from bench.core.did_you_mean import unknown
from bench.core.errors import DataError

INTERACTIONS = ("additive", "synergy", "buffering", "epistasis")
TUNING = {
    "background_fraction": 0.2,
    "baseline_sd": 1.5,
    "library_size": 5000.0,
    "library_sd": 0.25,
    "dispersion": 0.1,
    "activity_sd": 0.3,
    "cell_type_sd": 0.5,
    "modules_per_perturbation": 3.0,
    "effect_size": 0.8,
    "gene_noise_sd": 0.05,
    "target_effect": 3.0,
    "response_sd": 0.2,
    "synergy_factor": 1.6,
    "buffering_factor": 0.5,
    "double_mix": (0.6, 0.25, 0.15),
    "interaction_shares": {"additive": 0.7, "synergy": 0.1, "buffering": 0.1, "epistasis": 0.1},
}
TARGET_SUM = 1e4
DISPERSION_LOG_SD = 0.5
BLOCK_ENTRIES = 250_000
INVERSION_MAX_MEAN = 20.0
VERSION = "1"  # bump when the output for given parameters changes: it keys cached data and splits


@dataclass(frozen=True)
class Design:
    """The screen's layout: which genes are perturbed, and how."""

    singles: np.ndarray
    extras: np.ndarray
    doubles: np.ndarray
    interaction: list[str]
    dominant: np.ndarray

    @property
    def targets(self) -> np.ndarray:
        """Every perturbed gene: the singles, then the genes perturbed only in doubles."""
        return np.concatenate([self.singles, self.extras])


@dataclass(frozen=True)
class Truth:
    """The planted expression model that cells are drawn from."""

    log_base: np.ndarray
    module: np.ndarray
    loading: np.ndarray
    inverse_dispersion: np.ndarray
    module_effect: np.ndarray
    conditions: list[str]
    lfc: np.ndarray


def simulate(
    *,
    n_cells: int = 3000,
    n_genes: int = 1000,
    n_modules: int = 20,
    n_singles: int = 40,
    n_doubles: int = 60,
    n_cell_types: int = 1,
    control_fraction: float = 0.1,
    seed: int = 0,
    **tuning,
) -> ad.AnnData:
    """A simulated Perturb-seq screen as canonical AnnData, with its ground truth in ``uns['simulation']``.

    ``n_singles`` genes are perturbed alone; ``n_doubles`` pairs are perturbed together (their genes may
    lack a single, see ``double_mix``). Tuning parameters (defaults in ``TUNING``):
    ``background_fraction`` share of genes in no module; ``baseline_sd`` log-sd of baseline gene means;
    ``library_size`` median total count per cell; ``library_sd`` its log-sd; ``dispersion`` median
    negative-binomial dispersion φ (variance μ + φμ²); ``activity_sd`` sd of cell-level module
    activities; ``cell_type_sd`` sd of cell-type shifts of baselines and log-gains of module effects;
    ``modules_per_perturbation`` mean number of modules a perturbed gene acts on; ``effect_size``
    typical module log-fold change; ``gene_noise_sd`` sd of gene-specific log-fold changes;
    ``target_effect`` log-fold change of the perturbed gene itself; ``response_sd`` sd of a cell's
    response strength (mean 1); ``synergy_factor`` (> 1) and ``buffering_factor`` (< 1) scale the sum of
    a double's effects; ``double_mix`` shares of doubles with 2, 1, 0 genes that have a single;
    ``interaction_shares`` shares of the types ``additive``, ``synergy``, ``buffering``, ``epistasis``.
    Raises ``DataError`` for impossible values.
    """
    sizes = {"n_cells": n_cells, "n_genes": n_genes, "n_modules": n_modules, "n_singles": n_singles,
             "n_doubles": n_doubles, "n_cell_types": n_cell_types, "seed": seed}
    params = _check_params(sizes, control_fraction, tuning)
    rng = np.random.default_rng(seed)
    genes = _gene_names(n_genes)
    design, truth = _truth(params, genes, rng)
    condition, cell_type = _cells(params, len(truth.conditions), rng)
    counts, X = _expression(params, truth, condition, cell_type, rng)
    return _anndata(params, design, truth, genes, condition, cell_type, counts, X)


def _check_params(sizes: dict, control_fraction: float, tuning: dict) -> dict:
    """All parameters, validated and completed with defaults; a one-line ``DataError`` otherwise."""
    for key in tuning:
        if key not in TUNING:
            raise DataError(unknown("simulator parameter", key, list(TUNING) + list(sizes) + ["control_fraction"]))
    for name, value in sizes.items():
        minimum = 0 if name in ("n_singles", "n_doubles", "seed") else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise DataError(f"simulator parameter {name}={value!r} must be an integer >= {minimum}")
    params = {k: int(v) for k, v in sizes.items()}
    params["control_fraction"] = _number("control_fraction", control_fraction)
    for key, default in TUNING.items():
        value = tuning.get(key, default)
        if key == "double_mix":
            params[key] = _shares(key, dict(zip(("2", "1", "0"), _sequence(key, value, 3))))
        elif key == "interaction_shares":
            params[key] = _interaction_shares(value)
        else:
            params[key] = _number(key, value)
    _check_ranges(params)
    _check_layout(params)
    return params


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataError(f"simulator parameter {name}={value!r} must be a number")
    if not math.isfinite(value):
        raise DataError(f"simulator parameter {name}={value!r} must be finite")
    return float(value)


def _sequence(name: str, value: object, length: int) -> list[float]:
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence) or len(value) != length:
        raise DataError(f"simulator parameter {name}={value!r} must be a list of {length} numbers")
    return [_number(name, v) for v in value]


def _interaction_shares(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise DataError(f"simulator parameter interaction_shares={value!r} must map types to shares")
    for key in value:
        if key not in INTERACTIONS:
            raise DataError(unknown("interaction type", str(key), INTERACTIONS))
    return _shares("interaction_shares", {k: _number("interaction_shares", value.get(k, 0.0)) for k in INTERACTIONS})


def _shares(name: str, shares: dict[str, float]) -> dict[str, float]:
    """``shares`` normalised to sum 1 (they must be non-negative with a positive sum)."""
    total = sum(shares.values())
    if min(shares.values()) < 0 or total <= 0:
        raise DataError(f"simulator parameter {name} needs non-negative shares with a positive sum, got {shares}")
    return {k: v / total for k, v in shares.items()}


def _check_ranges(p: dict) -> None:
    rules = [
        ("control_fraction", 0 < p["control_fraction"] < 1, "must be between 0 and 1 (exclusive)"),
        ("background_fraction", 0 <= p["background_fraction"] < 1, "must be in [0, 1)"),
        ("library_size", p["library_size"] > 0, "must be positive"),
        ("dispersion", p["dispersion"] > 0, "must be positive"),
        ("modules_per_perturbation", p["modules_per_perturbation"] >= 1, "must be at least 1"),
        ("synergy_factor", p["synergy_factor"] > 1, "must be above 1"),
        ("buffering_factor", 0 <= p["buffering_factor"] < 1, "must be in [0, 1)"),
    ]
    rules += [(k, p[k] >= 0, "must be non-negative") for k in TUNING if k.endswith("_sd")]
    rules += [(k, p[k] >= 0, "must be non-negative") for k in ("effect_size", "target_effect")]
    for name, ok, message in rules:
        if not ok:
            raise DataError(f"simulator parameter {name}={p[name]!r} {message}")


def _check_layout(p: dict) -> None:
    """Raise when the genes, pairs or cells asked for cannot be laid out."""
    module_genes = p["n_genes"] - int(p["background_fraction"] * p["n_genes"])
    if module_genes < 2 * p["n_modules"]:
        raise DataError(f"n_modules={p['n_modules']} needs {2 * p['n_modules']} module genes (2 per module), "
                        f"but n_genes={p['n_genes']} leaves {module_genes}; lower n_modules or background_fraction")
    if p["n_singles"] + p["n_doubles"] == 0:
        raise DataError("the screen needs at least one perturbation; set n_singles or n_doubles above 0")
    n_both, n_one, n_none = _double_kinds(p)
    if n_both > math.comb(p["n_singles"], 2):
        raise DataError(f"n_doubles={p['n_doubles']} with double_mix {list(p['double_mix'].values())} needs {n_both} "
                        f"pairs of singles, but n_singles={p['n_singles']} gives {math.comb(p['n_singles'], 2)}")
    if n_one and not p["n_singles"]:
        raise DataError(f"double_mix asks for {n_one} doubles with one single, but n_singles=0")
    perturbed = p["n_singles"] + _n_extras(n_one, n_none, p["n_singles"])
    if perturbed > p["n_genes"]:
        raise DataError(f"the screen perturbs {perturbed} genes (singles and genes only in doubles), "
                        f"more than n_genes={p['n_genes']}; lower n_singles or n_doubles")
    n_conditions = p["n_singles"] + p["n_doubles"]
    n_control = _n_control(p)
    if n_control < p["n_cell_types"] or p["n_cells"] - n_control < n_conditions * p["n_cell_types"]:
        raise DataError(f"n_cells={p['n_cells']} is too few for {n_conditions} conditions x {p['n_cell_types']} "
                        f"cell types plus controls (control_fraction={p['control_fraction']}); raise n_cells")


def _n_control(p: dict) -> int:
    return int(round(p["control_fraction"] * p["n_cells"]))


def _split_count(total: int, shares: Sequence[float]) -> list[int]:
    """``total`` split by ``shares`` with largest-remainder rounding."""
    raw = np.asarray(shares, dtype=float) * total
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return [int(c) for c in counts]


def _double_kinds(p: dict) -> list[int]:
    """How many doubles have two, one and no genes with a single."""
    return _split_count(p["n_doubles"], list(p["double_mix"].values()))


def _n_extras(n_one: int, n_none: int, n_singles: int) -> int:
    """Genes perturbed only in doubles: each in about two doubles, enough for distinct pairs."""
    if not n_one + n_none:
        return 0
    for_none = math.ceil((1 + math.sqrt(1 + 8 * n_none)) / 2) if n_none else 0
    for_one = math.ceil(n_one / max(n_singles, 1))
    return max(math.ceil((n_one + 2 * n_none) / 2), for_none, for_one)


def _pick_pairs(first: np.ndarray, second: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct pairs (sorted rows) of two different genes, one from ``first``, one from ``second``.

    Drawn by rejection, so the space of possible pairs is never enumerated (callers check it holds ``n``).
    """
    pairs = np.empty((0, 2), dtype=np.int64)
    while len(pairs) < n:
        draw = np.column_stack([rng.choice(first, size=2 * n), rng.choice(second, size=2 * n)])
        pairs = np.concatenate([pairs, np.sort(draw[draw[:, 0] != draw[:, 1]], axis=1)])
        _, first_seen = np.unique(pairs, axis=0, return_index=True)
        pairs = pairs[np.sort(first_seen)]
    return pairs[:n]


def _design(p: dict, log_pi: np.ndarray, rng: np.random.Generator) -> Design:
    """Perturbed genes, the doubles (gene index pairs) and their planted interaction types.

    Targets are drawn from the less expressed half of genes (like the transcription factors of CRISPRa
    screens), so that raising them never swamps a cell's library.
    """
    n_both, n_one, n_none = _double_kinds(p)
    n_extra = _n_extras(n_one, n_none, p["n_singles"])
    n_targets = p["n_singles"] + n_extra
    candidates = np.argsort(log_pi, kind="stable")[: max(n_targets, p["n_genes"] // 2)]
    targets = rng.choice(candidates, size=n_targets, replace=False)
    singles, extras = targets[: p["n_singles"]], targets[p["n_singles"]:]
    doubles = np.concatenate([
        _pick_pairs(singles, singles, n_both, rng),
        _pick_pairs(singles, extras, n_one, rng),
        _pick_pairs(extras, extras, n_none, rng),
    ])
    kinds = np.repeat(INTERACTIONS, _split_count(len(doubles), list(p["interaction_shares"].values())))
    dominant = doubles[np.arange(len(doubles)), rng.integers(0, 2, size=len(doubles))]
    return Design(singles, extras, doubles, [str(k) for k in rng.permutation(kinds)], dominant)


def _modules(p: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Module id per gene (-1 for background) and loadings."""
    n_genes, n_modules = p["n_genes"], p["n_modules"]
    n_module_genes = n_genes - int(p["background_fraction"] * n_genes)
    extra = _split_count(n_module_genes - 2 * n_modules, rng.dirichlet(np.full(n_modules, 10.0)))
    module = np.full(n_genes, -1, dtype=np.int64)
    module[rng.permutation(n_genes)[:n_module_genes]] = np.repeat(np.arange(n_modules), np.add(extra, 2))
    loading = np.where(module >= 0, rng.uniform(0.5, 1.5, size=n_genes), 0.0)
    return module, loading


def _truth(p: dict, genes: list[str], rng: np.random.Generator) -> tuple[Design, Truth]:
    """The screen's design, and baselines, modules, dispersions and the true log-fold change of every
    condition in every cell type."""
    n_genes, n_types = p["n_genes"], p["n_cell_types"]
    module, loading = _modules(p, rng)
    log_pi = rng.normal(0.0, p["baseline_sd"], size=n_genes)
    log_pi -= log_pi.max() + np.log(np.exp(log_pi - log_pi.max()).sum())
    design = _design(p, log_pi, rng)
    shifts = rng.normal(0.0, p["cell_type_sd"], size=(n_types, n_genes))
    shifts[0] = 0.0
    log_base = np.log(p["library_size"]) + log_pi + shifts
    inverse_dispersion = 1.0 / (p["dispersion"] * np.exp(rng.normal(0.0, DISPERSION_LOG_SD, size=n_genes)))
    effects = _module_effects(p, len(design.singles) + len(design.extras), rng)
    gains = np.exp(rng.normal(0.0, p["cell_type_sd"], size=(n_types, p["n_modules"])))
    gains[0] = 1.0
    noise = rng.normal(0.0, p["gene_noise_sd"], size=(len(effects), n_genes))
    tables = [_condition_lfc(p, design, loading * (effects * gain)[:, np.maximum(module, 0)] + noise, genes)
              for gain in gains]
    lfc = np.stack([table for _, table in tables])
    return design, Truth(log_base, module, loading, inverse_dispersion, effects, tables[0][0], lfc)


def _module_effects(p: dict, n_perturbed: int, rng: np.random.Generator) -> np.ndarray:
    """Sparse signed module effects (perturbed genes x modules)."""
    n_modules = p["n_modules"]
    effects = np.zeros((n_perturbed, n_modules))
    n_hit = np.minimum(n_modules, 1 + rng.poisson(p["modules_per_perturbation"] - 1, size=n_perturbed))
    for row, k in enumerate(n_hit):
        hit = rng.choice(n_modules, size=k, replace=False)
        effects[row, hit] = rng.choice([-1.0, 1.0], size=k) * p["effect_size"] * rng.uniform(0.5, 1.5, size=k)
    return effects


def _condition_lfc(p: dict, design: Design, downstream: np.ndarray,
                   genes: list[str]) -> tuple[list[str], np.ndarray]:
    """The conditions (control first, then sorted) and their log-fold changes, from the downstream
    effects of the perturbed genes (rows in ``design.targets`` order)."""
    row = {int(g): i for i, g in enumerate(design.targets)}
    table = {}
    for gene in design.singles:
        table[canonical([genes[gene]])] = _with_targets(downstream[row[gene]], [gene], p["target_effect"])
    for (a, b), kind, dominant in zip(design.doubles, design.interaction, design.dominant):
        total = downstream[row[a]] + downstream[row[b]]
        combined = {
            "additive": total,
            "synergy": p["synergy_factor"] * total,
            "buffering": p["buffering_factor"] * total,
            "epistasis": downstream[row[dominant]],
        }[kind]
        table[canonical([genes[a], genes[b]])] = _with_targets(combined, [a, b], p["target_effect"])
    conditions = sorted(table)
    lfc = np.vstack([np.zeros(len(genes))] + [table[c] for c in conditions])
    return [CONTROL, *conditions], lfc


def _with_targets(lfc: np.ndarray, targets: list[int], effect: float) -> np.ndarray:
    """A copy of ``lfc`` with the perturbed genes themselves raised by ``effect``."""
    lfc = lfc.copy()
    lfc[targets] += effect
    return lfc


def _cells(p: dict, n_conditions: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Condition and cell-type index of every cell, in random order; condition 0 is the control."""
    n_perturbed_cells = p["n_cells"] - _n_control(p)
    base, remainder = divmod(n_perturbed_cells, n_conditions - 1)
    sizes = np.full(n_conditions - 1, base)
    sizes[rng.choice(n_conditions - 1, size=remainder, replace=False)] += 1
    sizes = np.concatenate([[_n_control(p)], sizes])
    condition = np.repeat(np.arange(n_conditions), sizes)
    cell_type = np.concatenate([rng.permutation(np.arange(size) % p["n_cell_types"]) for size in sizes])
    order = rng.permutation(p["n_cells"])
    return condition[order], cell_type[order]


def _expression(p: dict, truth: Truth, condition: np.ndarray, cell_type: np.ndarray,
                rng: np.random.Generator) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Counts and log-normalised expression, drawn in blocks of cells (each with its own generator)."""
    rows = max(1, BLOCK_ENTRIES // p["n_genes"])
    starts = list(range(0, p["n_cells"], rows))
    generators = rng.spawn(len(starts))

    def block(i: int) -> tuple[np.ndarray, ...]:
        cells = slice(starts[i], starts[i] + rows)
        return _block(p, truth, condition[cells], cell_type[cells], generators[i])

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        pieces = list(pool.map(block, range(len(starts))))
    return _assemble(pieces, p["n_cells"], p["n_genes"])


def _block(p: dict, truth: Truth, condition: np.ndarray, cell_type: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """One block of cells as CSR pieces: nonzeros and total count per row, column indices, values."""
    n = len(condition)
    activity = np.zeros((n, p["n_modules"] + 1))  # the last, zero column is read by background genes (-1)
    activity[:, :-1] = rng.normal(0.0, p["activity_sd"], size=(n, p["n_modules"]))
    log_mu = truth.log_base[cell_type]
    log_mu += rng.normal(0.0, p["library_sd"], size=(n, 1))
    log_mu += activity[:, truth.module] * truth.loading
    strength = np.maximum(0.0, rng.normal(1.0, p["response_sd"], size=(n, 1)))
    log_mu += strength * truth.lfc[cell_type, condition]
    counts = _negative_binomial(np.exp(log_mu, out=log_mu), truth.inverse_dispersion, rng)
    row, col = np.nonzero(counts)
    return np.bincount(row, minlength=n), counts.sum(axis=1), _compact(col), _compact(counts[row, col])


def _compact(values: np.ndarray) -> np.ndarray:
    """Non-negative integers in 16 bits where they fit (halves the memory of pieces held until assembly)."""
    return values.astype(np.uint16 if values.size == 0 or values.max() < 2**16 else np.int32)


def _negative_binomial(mu: np.ndarray, size: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Negative-binomial counts with means ``mu`` and per-column size ``size`` (variance μ + μ²/size).

    Small means (most of scRNA-seq) by inversion of one uniform per entry; large ones by Gamma-Poisson.
    """
    size = np.broadcast_to(size, mu.shape)
    counts = np.zeros(mu.shape, dtype=np.int32)
    large = mu > INVERSION_MAX_MEAN
    counts[large] = rng.poisson(rng.gamma(size[large], mu[large] / size[large]))
    m, s = mu[~large], size[~large]
    u = rng.random(m.size)
    ratio = m / (m + s)
    pmf = np.exp(-s * np.log1p(m / s))
    cdf = pmf.copy()
    drawn = np.zeros(m.size, dtype=np.int32)
    active = np.flatnonzero(u > cdf)
    u, ratio, s, pmf, cdf = (a[active] for a in (u, ratio, s, pmf, cdf))
    k = 0
    while active.size:
        k += 1
        pmf *= ratio * (k - 1 + s) / k
        cdf += pmf
        drawn[active] = k
        keep = (u > cdf) & (pmf > 1e-18)
        active, u, ratio, s, pmf, cdf = (a[keep] for a in (active, u, ratio, s, pmf, cdf))
    counts[~large] = drawn
    return counts


def _assemble(pieces: list, n_cells: int, n_genes: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """CSR counts and ``log1p(normalize_total(counts, 1e4))`` from block pieces, freeing each once copied.

    Not ``loaders.log_normalise`` (scanpy): these float32 values define the synthetic dataset and its committed
    results, and scanpy's differ from 14% of them by 1 ulp."""
    row_nnz = np.concatenate([piece[0] for piece in pieces])
    nnz = int(row_nnz.sum())
    index_dtype = np.int32 if nnz < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(n_cells + 1, dtype=index_dtype)
    np.cumsum(row_nnz, out=indptr[1:])
    indices = np.empty(nnz, dtype=index_dtype)
    counts = np.empty(nnz, dtype=np.float32)
    normalised = np.empty(nnz, dtype=np.float32)
    position = 0
    for i, (rows, totals, columns, values) in enumerate(pieces):
        pieces[i] = None
        end = position + len(columns)
        indices[position:end], counts[position:end] = columns, values
        scale = np.repeat(TARGET_SUM / np.maximum(totals, 1), rows)
        np.log1p(counts[position:end] * scale, out=normalised[position:end])
        position = end
    shape = (n_cells, n_genes)
    return (sp.csr_matrix((counts, indices, indptr), shape=shape),
            sp.csr_matrix((normalised, indices.copy(), indptr.copy()), shape=shape))


def _gene_names(n_genes: int) -> list[str]:
    width = max(5, len(str(n_genes)))
    return [f"G{i:0{width}d}" for i in range(1, n_genes + 1)]


def _anndata(p: dict, design: Design, truth: Truth, genes: list[str], condition: np.ndarray,
             cell_type: np.ndarray, counts: sp.csr_matrix, X: sp.csr_matrix) -> ad.AnnData:
    """The canonical AnnData with the ground truth in ``uns['simulation']``."""
    width = len(str(p["n_cells"]))
    types = [f"type_{t}" for t in range(p["n_cell_types"])]
    obs = pd.DataFrame(
        {"condition": pd.Categorical.from_codes(condition, categories=truth.conditions),
         "cell_type": pd.Categorical.from_codes(cell_type, categories=types)},
        index=[f"cell_{i:0{width}d}" for i in range(p["n_cells"])],
    )
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes), layers={"counts": counts})
    doubles = [canonical([genes[a], genes[b]]) for a, b in design.doubles]
    used = np.isin(design.targets, np.concatenate([design.singles, design.doubles.ravel()]))
    adata.uns["simulation"] = {
        "params": {**p, "double_mix": list(p["double_mix"].values())},
        "gene_module": truth.module,
        "gene_loading": truth.loading,
        "perturbed_genes": [genes[g] for g in design.targets[used]],
        "module_effect": truth.module_effect[used],
        "cell_types": types,
        "conditions": truth.conditions[1:],
        "lfc": truth.lfc[:, 1:].astype(np.float32),
        "interaction": dict(zip(doubles, design.interaction)),
        "dominant": {d: genes[g] for d, g, kind in zip(doubles, design.dominant, design.interaction)
                     if kind == "epistasis"},
    }
    return adata
