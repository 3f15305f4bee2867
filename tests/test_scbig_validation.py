"""scBIG's validation value (``training.validation_value``) is the official ``val_r_all``: the mean over
validation conditions of the all-gene Pearson delta, conditions whose correlation is undefined left out
(``train_norman_additive.py:3358-3360`` with ``safe_pearson``/``safe_mean``, 732-748)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from bench.adapters.scbig import training
from bench.adapters.scbig.training import FlowParams, ValidationGroup


@pytest.fixture
def predictions(monkeypatch):
    """``validation_value`` with the flow's predicted cells replaced by the given means, by condition."""
    table: dict[str, np.ndarray] = {}

    def predicted_cells(flow, latent, z0, condition, cell_type, rtol, atol):
        return torch.from_numpy(np.stack([table[condition]] * 2))

    monkeypatch.setattr(training, "predict_cells", predicted_cells)
    return table


def group(observed: np.ndarray, control_mean: np.ndarray, conditions: list[str]) -> ValidationGroup:
    return ValidationGroup("k562", conditions, observed, control_mean, torch.zeros(2, 3))


def test_undefined_correlations_are_left_out_not_counted_as_zero(predictions):
    rng = np.random.default_rng(0)
    control = rng.normal(size=20)
    observed = control + rng.normal(size=(3, 20))
    predictions["A+B"] = control + rng.normal(size=20)
    predictions["A+ctrl"] = control + rng.normal(size=20)
    predictions["B+ctrl"] = control + 0.5  # a constant change: its correlation is undefined (safe_pearson: NaN)
    value = training.validation_value(None, None, [group(observed, control, ["A+B", "A+ctrl", "B+ctrl"])],
                                      FlowParams())
    defined = [stats.pearsonr(predictions[c] - control, observed[i] - control)[0]
               for i, c in enumerate(["A+B", "A+ctrl"])]
    assert value == pytest.approx(np.mean(defined), abs=1e-12)


def test_constant_observed_change_and_several_groups(predictions):
    rng = np.random.default_rng(1)
    control = rng.normal(size=20)
    predictions["A+ctrl"] = control + rng.normal(size=20)
    predictions["B+ctrl"] = control + rng.normal(size=20)
    flat = np.stack([control + 1e-9 * rng.normal(size=20)])  # no change beyond np.allclose's tolerance
    changed = np.stack([control + rng.normal(size=20)])
    value = training.validation_value(None, None, [group(flat, control, ["A+ctrl"]),
                                                   group(changed, control, ["B+ctrl"])], FlowParams())
    assert value == pytest.approx(stats.pearsonr(predictions["B+ctrl"] - control, changed[0] - control)[0],
                                  abs=1e-12)


def test_no_defined_correlation_is_the_official_default_zero(predictions):
    control = np.linspace(0, 1, 20)
    predictions["A+ctrl"] = control.copy()
    value = training.validation_value(None, None, [group(control[None] + 1.0, control, ["A+ctrl"])], FlowParams())
    assert value == 0.0
