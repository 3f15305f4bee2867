"""The base class of an adapter: declared parameters (``params``) and ``skip``; no torch here."""

from __future__ import annotations

import inspect
from typing import ClassVar

from bench.adapters.kit.param_groups import ParamGroups
from bench.adapters.kit.params import Params
from bench.core.api import DataProperties, TrainData


class Adapter:
    """An adapter declares ``Params`` (a ``Params`` dataclass, or a ``ParamGroups`` of several) and
    writes ``fit`` and ``predict``.

    The constructor takes the parameters by name and keeps them checked in ``self.params``; the class's
    signature is that of ``Params``, so the registry reads the parameter names and defaults from it (a
    subclass with its own ``__init__`` keeps that one's signature; it must call ``super().__init__``).
    """

    Params: ClassVar[type[Params] | type[ParamGroups]] = Params

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__signature__ = inspect.signature(cls.Params) if cls.__init__ is Adapter.__init__ else None

    def __init__(self, **values):
        self.params = self.Params(**values)

    @classmethod
    def skip(cls, params: Params, data: DataProperties) -> str | None:
        """Why the model cannot run on ``data`` with ``params`` (the run is recorded as skipped), or None."""
        return None

    def check_queries(self, train: TrainData, queries: dict[str, list[str]]) -> None:
        """Raise a ``ModelError`` when ``predict`` would refuse one of ``queries`` (condition names per cell
        type) after training, so that the run fails before it trains. Called once, before ``fit``, with the
        split's test conditions: their names only, nothing to learn from."""
