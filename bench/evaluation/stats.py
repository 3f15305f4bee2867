"""Honest statistics: aggregation over seeds and paired bootstrap confidence intervals.

Across seeds a metric is reported as mean ± sample standard deviation. A comparison of two models is
paired over the perturbations both were scored on: the bootstrap resamples perturbations (with
replacement) and reports the expanded percentile interval of the mean difference (``scipy.stats.bootstrap``
for the resampling). The plain percentile interval is too narrow at small n: the bootstrap distribution of
a mean has the plug-in sd, narrower than the sample sd by sqrt((n−1)/n), and its quantiles are normal
ones where Student's t fits. The expanded percentile interval (Hesterberg, "What Teachers Should Know About
the Bootstrap", The American Statistician 69(4), 2015) takes the percentiles at the level
whose normal quantile is sqrt(n/(n−1))·t_{n−1}: as wide as the t interval for normal differences, as
skewed as the bootstrap distribution otherwise. ``docs/statistics.md`` measures both on the simulator.
Next to it stands the smallest difference the comparison could detect: at a two-sided 5% level with 80%
power, a true difference of (z₀.₉₇₅ + z₀.₈) ≈ 2.80 standard errors (the bootstrap's standard error of the
mean difference) is found 80% of the time (the normal approximation of a paired test's power).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

TIE = 1e-6  # per-perturbation differences smaller than this are rounding, not a direction: metrics come from
# float32 expression values (resolution 1.2e-7 near 1), summed over genes
POWER = 0.8


@dataclass(frozen=True)
class SeedSummary:
    mean: float
    sd: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.sd:.3f}" if self.n > 1 else f"{self.mean:.3f}"


def over_seeds(values) -> SeedSummary:
    """Mean ± sample sd (ddof=1) of one metric over seeds; NaN values are left out."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return SeedSummary(float("nan"), float("nan"), 0)
    sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return SeedSummary(float(values.mean()), sd, len(values))


@dataclass(frozen=True)
class PairedDifference:
    mean: float
    low: float
    high: float
    n: int
    detectable: float = float("nan")  # the smallest true difference detected with 80% power (module docstring)

    @property
    def significant(self) -> bool:
        """True when the 95% interval excludes zero."""
        return self.low > 0 or self.high < 0


def expanded_level(level: float, n: int) -> float:
    """The confidence level of the percentile interval that Hesterberg's expansion takes for ``n``
    observations: the one whose two-sided normal quantile is sqrt(n/(n−1))·t_{n−1} at ``level``."""
    t = scipy.stats.t.ppf(1 - (1 - level) / 2, n - 1)
    return float(1 - 2 * scipy.stats.norm.sf(np.sqrt(n / (n - 1)) * t))


def paired_bootstrap(a, b, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> PairedDifference:
    """Bootstrap CI of mean(a − b) over paired observations (perturbations scored by both models)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same shape, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    diff[np.abs(diff) < TIE] = 0.0
    if len(diff) < 2:  # one perturbation has no spread to bound its difference: no interval, never a star
        return PairedDifference(float(diff[0]) if len(diff) else float("nan"), float("nan"), float("nan"), len(diff))
    found = scipy.stats.bootstrap((diff,), np.mean, n_resamples=n_boot, vectorized=True,
                                  confidence_level=expanded_level(level, len(diff)), method="percentile",
                                  rng=np.random.default_rng(seed))
    z = scipy.stats.norm.ppf(1 - (1 - level) / 2) + scipy.stats.norm.ppf(POWER)
    interval = found.confidence_interval
    return PairedDifference(float(diff.mean()), float(interval.low), float(interval.high), len(diff),
                            float(z * found.standard_error))
