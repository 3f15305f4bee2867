"""Grouped parameters (``kit.param_groups``): flat card names outside, one ``Params`` per group inside."""

from __future__ import annotations

import inspect
import pickle
from dataclasses import dataclass

import pytest
import torch

from bench.adapters.kit.param_groups import ParamGroups
from bench.adapters.kit.params import Params, param
from bench.adapters.kit.torch_adapter import TorchAdapter
from bench.core.api import TrainData


@dataclass(frozen=True)
class EncoderParams(Params):
    width: int = param(8, "[1, inf)")
    dropout: float = param(0.1, "[0, 1)", name="ae_dropout")


@dataclass(frozen=True)
class RunParams(Params):
    max_cells: int = param(5, "[1, inf)")
    threads: int = param(1, "[0, inf)")


class ToyParams(ParamGroups):
    encoder: EncoderParams
    run: RunParams


class Toy(TorchAdapter):
    Params = ToyParams

    def _fit(self, train):
        self.threads, self.weights = torch.get_num_threads(), torch.rand(3)


def test_the_signature_lists_every_group_flat_by_card_name():
    signature = inspect.signature(Toy)
    assert list(signature.parameters) == ["width", "ae_dropout", "max_cells", "threads"]
    assert [p.default for p in signature.parameters.values()] == [8, 0.1, 5, 1]


def test_each_group_is_built_from_its_card_parameters():
    params = Toy(ae_dropout=0.5, threads=2).params
    assert params.encoder == EncoderParams(width=8, dropout=0.5) and params.run == RunParams(threads=2)
    assert (params.ae_dropout, params.threads, params.width) == (0.5, 2, 8)
    assert params == ToyParams(threads=2, ae_dropout=0.5) != ToyParams()
    assert pickle.loads(pickle.dumps(params)) == params
    with pytest.raises(AttributeError, match="frozen"):
        params.run = RunParams()
    with pytest.raises(AttributeError, match="no group or parameter 'dropout'"):
        params.dropout


@pytest.mark.parametrize("values, error, message", [
    ({"ae_dropout": 1.5}, ValueError, "ae_dropout must be in [0, 1), got 1.5"),
    ({"max_cells": 0}, ValueError, "max_cells must be in [1, inf), got 0"),
    ({"dropout": 0.2}, TypeError, "unknown parameter 'dropout'; allowed: width, ae_dropout, max_cells, threads"),
])
def test_bad_parameters_are_one_line_errors_naming_the_card_parameter(values, error, message):
    with pytest.raises(error) as caught:
        Toy(**values)
    assert str(caught.value) == message


def test_a_card_name_declared_twice_is_refused_where_the_groups_are_declared():
    @dataclass(frozen=True)
    class Other(Params):
        width: int = param(3)

    with pytest.raises(TypeError, match="'width' names two parameters or groups"):
        type("Twice", (ParamGroups,), {"__annotations__": {"encoder": EncoderParams, "other": Other}})
    with pytest.raises(TypeError, match="'threads' names two parameters or groups"):
        type("Clash", (ParamGroups,), {"__annotations__": {"run": RunParams, "threads": EncoderParams}})


def test_torch_adapter_reads_threads_from_its_group(small_synthetic):
    train = TrainData(cells=small_synthetic, val=small_synthetic[:0], seed=5)
    before = torch.get_num_threads()
    first, second = Toy(threads=1), Toy(threads=1)
    first.fit(train)
    second.fit(train)
    assert first.threads == 1 and torch.get_num_threads() == before and torch.equal(first.weights, second.weights)
