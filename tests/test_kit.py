"""The adapter kit: declared parameters, the base classes, early stopping, validation targets."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from bench.adapters.kit.base import Adapter
from bench.adapters.kit.early_stopping import EarlyStopping
from bench.adapters.kit.params import Params, param
from bench.adapters.kit.torch_adapter import TorchAdapter
from bench.adapters.kit.validation import validation_targets
from bench.core.api import TrainData
from bench.core.conditions import CONTROL


@dataclass(frozen=True)
class ToyParams(Params):
    width: int = param(8, "[1, inf)")
    rate: float = param(0.1, "[0, 1)")
    step: float = param(1e-3, "(0, 1]")
    kind: str = param("a", choices=("a", "b"))
    threads: int = param(1, "[0, inf)")


class Toy(TorchAdapter):
    Params = ToyParams

    def _fit(self, train):
        self.threads, self.weights = torch.get_num_threads(), torch.rand(3)


def test_the_signature_and_defaults_come_from_params():
    signature = inspect.signature(Toy)
    assert list(signature.parameters) == ["width", "rate", "step", "kind", "threads"]
    assert signature.parameters["step"].default == 1e-3
    assert Toy(width=3).params == ToyParams(width=3)


@pytest.mark.parametrize("values, message", [
    ({"width": 0}, "width must be in [1, inf), got 0"),
    ({"rate": 1.0}, "rate must be in [0, 1), got 1.0"),
    ({"rate": float("nan")}, "rate must be in [0, 1), got nan"),
    ({"step": 0.0}, "step must be in (0, 1], got 0.0"),
    ({"kind": "c"}, "kind must be one of a, b, got 'c'"),
])
def test_a_value_outside_its_rule_is_a_one_line_error(values, message):
    with pytest.raises(ValueError) as error:
        Toy(**values)
    assert str(error.value) == message
    assert Toy(**{**values, **{k: getattr(ToyParams(), k) for k in values}}).params == ToyParams()


def test_a_malformed_interval_is_refused_where_it_is_declared():
    with pytest.raises(ValueError, match="interval '0..1' must look like"):
        param(0.5, "0..1")


def test_arguments_are_the_parameters_a_function_takes_by_name():
    def library_train(width, kind="a", other=None, **rest): ...

    assert ToyParams(width=3).arguments(library_train) == {"width": 3, "kind": "a"}


def test_skip_declines_nothing_by_default():
    assert Adapter.skip(Params(), None) is None


def test_torch_adapter_scopes_threads_and_seeds_fit(small_synthetic):
    train = TrainData(cells=small_synthetic, val=small_synthetic[:0], seed=5)
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    first, second = Toy(threads=1), Toy(threads=1)
    first.fit(train)
    second.fit(train)
    assert first.threads == 1 and torch.get_num_threads() == threads
    assert torch.equal(first.weights, second.weights) and torch.equal(state, torch.random.get_rng_state())


def test_early_stopping_reports_negated_losses_and_keeps_the_best_weights():
    reported, net = [], torch.nn.Linear(1, 1, bias=False)
    stopping = EarlyStopping(2, lambda step, value: reported.append((step, value)))
    for step, loss in enumerate([3.0, 1.0, 2.0, 5.0], start=1):
        net.weight.data.fill_(loss)
        if stopping.evaluated(step, net, loss):
            break
    stopping.restore(net)
    assert reported == [(1, -3.0), (2, -1.0), (3, -2.0), (4, -5.0)] and float(net.weight.detach()) == 1.0


def test_validation_targets_are_per_cell_type_means_of_perturbed_conditions(small_synthetic):
    val = small_synthetic[small_synthetic.obs["condition"].isin([CONTROL, "G00003", "G00004"])]
    targets = validation_targets(TrainData(cells=small_synthetic, val=val))
    assert [(t.cell_type, t.conditions) for t in targets] == [("type_0", ["G00003", "G00004"])]
    observed = np.asarray(val[val.obs["condition"] == "G00004"].X.mean(axis=0)).ravel()
    assert np.allclose(targets[0].means[1], observed)
