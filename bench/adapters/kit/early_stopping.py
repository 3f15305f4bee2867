"""Early stopping on a validation value (lower is better), keeping a copy of the best weights."""

from __future__ import annotations

import copy

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
