"""Early stopping on a validation value (lower is better), keeping a copy of the best weights; with
``EarlyStopping`` each value is also reported to the harness (``TrainData.report``, higher is better)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch


class BestWeights:
    """``update(net, value)`` after each evaluation returns True once ``patience`` evaluations in a row
    brought no improvement (``patience`` 0: never); ``restore(net)`` loads the best weights seen."""

    def __init__(self, patience: int, initial: float = np.inf):
        self.patience = patience
        self.best = initial
        self.state: dict | None = None
        self.waited = 0

    def update(self, net: torch.nn.Module, value: float) -> bool:
        if value < self.best:
            self.best, self.state, self.waited = value, copy.deepcopy(net.state_dict()), 0
            return False
        self.waited += 1
        return bool(self.patience) and self.waited >= self.patience

    def restore(self, net: torch.nn.Module) -> None:
        if self.state is not None:
            net.load_state_dict(self.state)


class EarlyStopping(BestWeights):
    """``evaluated(step, net, loss)`` after each validation: reports ``-loss`` at ``step``, keeps the
    weights when best, and returns True once training should stop; ``restore(net)`` at the end."""

    def __init__(self, patience: int, report: Callable[[int, float], None]):
        super().__init__(patience)
        self.report = report

    def evaluated(self, step: int, net: torch.nn.Module, loss: float) -> bool:
        self.report(step, -loss)
        return self.update(net, loss)
