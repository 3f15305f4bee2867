"""The behaviour bench relies on in private third-party functions that have no public equivalent, pinned
so that an upgrade that changes it fails here rather than in the numbers. (scikit-learn's
``_spatial_median`` is held to scikit-learn's and GEARS' results by tests/test_interactions.py; Optuna's
and submitit's internals by the sweep and cluster tests.)"""

from __future__ import annotations

import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking._tracking_service.utils import _tracking_store_registry


def test_torch_standard_gamma_draws_unit_rate_gamma_from_a_given_generator():
    """CPA's negative binomial sampler (adapters/cpa/likelihood.nb_cells) needs Gamma(θ, 1) draws from a
    seeded generator; ``torch.distributions.Gamma.sample`` takes no generator."""
    theta = torch.tensor([0.5, 2.0, 10.0]).repeat(200_000, 1)

    def draws(seed):
        return torch._standard_gamma(theta, generator=torch.Generator().manual_seed(seed))

    first = draws(1)
    assert torch.equal(first, draws(1)) and not torch.equal(first, draws(2))
    assert first.mean(dim=0).tolist() == pytest.approx([0.5, 2.0, 10.0], rel=0.02)  # mean θ
    assert first.var(dim=0).tolist() == pytest.approx([0.5, 2.0, 10.0], rel=0.03)  # variance θ (unit rate)


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "postgresql://u@h/db", "http://h:5000", "https://h",
                                 "file:///tmp/mlruns", "mlruns"])
def test_mlflow_store_registry_knows_the_schemes_mlflow_tracks_to(uri):
    """tracking.check_store asks MLflow's own registry which schemes it can track to."""
    assert callable(_tracking_store_registry.get_store_builder(uri))


@pytest.mark.parametrize("uri", ["ftp://h/runs", "foo:bar"])
def test_mlflow_store_registry_refuses_other_schemes(uri):
    with pytest.raises(MlflowException):
        _tracking_store_registry.get_store_builder(uri)
