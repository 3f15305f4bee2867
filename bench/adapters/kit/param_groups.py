"""Parameters in groups, for an adapter whose components each take their own ``Params`` while its card
names them flat::

    class MyParams(ParamGroups):
        encoder: EncoderParams          # a Params dataclass; param(0.1, "[0, 1)", name="ae_dropout")
        training: TrainingParams        # where the card's name differs from the field's

    class MyModel(TorchAdapter):
        Params = MyParams               # self.params.encoder.dropout; self.params.threads (by card name)

The class's signature lists every group's fields flat by card name, group by group in declaration
order: the registry reads the names and defaults from it as from a flat ``Params``. Constructing it
from card parameters builds each group from its own (defaults for those not given; each group checks
its rules); an unknown name is a one-line ``TypeError`` naming the allowed ones. An instance also
answers a parameter by its card name (``params.threads``), so ``TorchAdapter`` and ``skip`` read
grouped and flat parameters alike.
"""

from __future__ import annotations

import inspect
import typing
from collections import Counter
from dataclasses import fields

from bench.adapters.kit.params import card_name


class ParamGroups:
    """Base of grouped parameters: each annotation is a group (a ``Params`` dataclass); see the module."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.group_types = typing.get_type_hints(cls)
        declared = [(group, f) for group, kind in cls.group_types.items() for f in fields(kind)]
        cls.card_fields = {card_name(f): (group, f.name) for group, f in declared}
        counts = Counter([card_name(f) for _, f in declared] + list(cls.group_types))
        if max(counts.values(), default=1) > 1:
            raise TypeError(f"{cls.__name__}: '{counts.most_common(1)[0][0]}' names two parameters or groups")
        cls.__signature__ = inspect.Signature([inspect.Parameter(card_name(f), inspect.Parameter.KEYWORD_ONLY,
                                                                 default=f.default) for _, f in declared])

    def __init__(self, **values):
        unknown = sorted(set(values) - set(self.card_fields))
        if unknown:
            raise TypeError(f"unknown parameter {unknown[0]!r}; allowed: {', '.join(self.card_fields)}")
        for group, kind in self.group_types.items():
            given = {name: values[card] for card, (owner, name) in self.card_fields.items()
                     if owner == group and card in values}
            object.__setattr__(self, group, kind(**given))

    def __getattr__(self, name: str):
        if name not in self.card_fields:
            raise AttributeError(f"{type(self).__name__} has no group or parameter {name!r}")
        group, field = self.card_fields[name]
        return getattr(getattr(self, group), field)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"
