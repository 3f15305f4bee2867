"""scBIG's adaptive Tsit5 (``bench/adapters/scbig/ode.py``) against diffrax itself, called as the official
release calls it (``tests/cellflow_env/diffrax_steps.py``, run in the CellFlow environment): the same steps
and the same solution, cell by cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_in_cellflow_env

from bench.adapters.scbig import ode

SCRIPT = Path(__file__).parent / "cellflow_env" / "diffrax_steps.py"
# Float64 on both sides. The step times carry the rounding of the error estimate, a combination of the stages
# whose weights sum to zero: torch and XLA round the field differently at 1e-16 of |f|, and that difference,
# relative to the small estimate, reaches the next step through err^(-1/5) (measured: up to 2e-9). Another step
# rule moves them by 1e-3 or more (a first step of 0.01 against Hairer's estimate, 0.03-0.05 here).
TIME_TOLERANCE = 1e-7
# With the same steps the solutions differ by rounding only (measured: 3e-14); another first step moved them
# by the solver's local error, up to 1.7e-4 on this field.
SOLUTION_TOLERANCE = 1e-10


def toy_field(rng: np.random.Generator, d: int = 3, hidden: int = 16) -> dict[str, np.ndarray]:
    """A one-hidden-layer time-dependent field whose solutions take a handful of steps at rtol 1e-5."""
    return dict(w1=rng.normal(size=(hidden, d + 1)), b1=rng.normal(size=hidden),
                w2=rng.normal(size=(d, hidden)) / 2, b2=rng.normal(size=d))


def torch_field(weights: dict[str, np.ndarray]):
    w1, b1, w2, b2 = (torch.from_numpy(weights[name]) for name in ("w1", "b1", "w2", "b2"))

    def field(t: float, y: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([y, y.new_full((len(y), 1), t)], dim=1)
        return torch.tanh(inputs @ w1.T + b1) @ w2.T + b2

    return field


def test_a_row_takes_diffraxs_steps_and_reaches_its_solution(cellflow_environment, tmp_path):
    rng = np.random.default_rng(7)
    weights = toy_field(rng)
    y0 = np.concatenate([rng.normal(size=(4, 3)), 10 * rng.normal(size=(2, 3))])  # unit and large states
    rtol = atol = 1e-5  # the official PIDController(rtol=1e-5, atol=1e-5)
    np.savez(tmp_path / "in.npz", **weights, y0=y0, rtol=rtol, atol=atol, t0=0.0, t1=1.0)
    run_in_cellflow_env(cellflow_environment, SCRIPT, tmp_path / "in.npz", tmp_path / "out.npz")
    official = np.load(tmp_path / "out.npz")
    field = torch_field(weights)
    for i, row in enumerate(y0):
        stats: dict = {}
        ours = ode.tsit5(field, torch.from_numpy(row)[None], 0.0, 1.0, rtol=rtol, atol=atol, stats=stats)[0]
        times = official["ts"][i][np.isfinite(official["ts"][i])]
        assert times[0] == pytest.approx(0.01, abs=TIME_TOLERANCE)  # diffrax's first step (see ode.py)
        assert (stats["accepted"], stats["rejected"]) == (official["accepted"][i], official["rejected"][i])
        np.testing.assert_allclose(stats["times"], times, rtol=0, atol=TIME_TOLERANCE)
        np.testing.assert_allclose(ours.numpy(), official["y1"][i], rtol=0, atol=SOLUTION_TOLERANCE)
