"""Declared parameters: an adapter's parameters, their defaults and allowed values in one frozen dataclass.

Each field is a ``param(default, within)`` with ``within`` an interval such as ``"[1, inf)"`` or
``"[0, 1)"`` (brackets include the end, parentheses exclude it), or ``param(default, choices=(...))``;
``name`` is the card's name of the field where it differs (a group of ``param_groups.ParamGroups`` whose
fields are named for their component, e.g. ``epochs`` that the card calls ``ae_epochs``). Constructing
the dataclass checks every value and raises a one-line ``ValueError`` naming the (card) parameter,
what it allows and the value. A rule between parameters goes in the subclass's ``__post_init__``, after
``super().__post_init__()``. These defaults are the card defaults too (``bench.core.registry``).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import Field, dataclass, field, fields

INTERVAL = re.compile(r"^([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])$")


class Rule:
    """The values a parameter allows: an interval ``within`` (e.g. ``"[0, 1)"``) or ``choices``."""

    def __init__(self, within: str = "", choices: tuple = ()):
        self.within, self.choices = within, tuple(choices)
        if within:
            match = INTERVAL.match(within)
            try:
                self.low, self.high = float(match[2]), float(match[3])
            except (TypeError, ValueError):
                raise ValueError(f"interval {within!r} must look like '[0, 1)' or '(0, inf)'") from None
            self.closed = (match[1] == "[", match[4] == "]")

    def allows(self, value) -> bool:
        if self.choices:
            return value in self.choices
        above = self.low <= value if self.closed[0] else self.low < value
        return above and (value <= self.high if self.closed[1] else value < self.high)

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.choices)) if self.choices else f"in {self.within}"


def param(default, within: str = "", choices: tuple = (), name: str = ""):
    """A dataclass field: the parameter's default, the values it allows (an interval or choices) and,
    where it differs from the field's, the card's name of the parameter."""
    metadata = {"rule": Rule(within, tuple(choices))} if within or choices else {}
    return field(default=default, metadata={**metadata, "name": name} if name else metadata)


def card_name(declared: Field) -> str:
    """The card's name of a ``Params`` field."""
    return declared.metadata.get("name") or declared.name


@dataclass(frozen=True)
class Params:
    """Base of an adapter's parameters: checks every field declared with a rule when constructed."""

    def __post_init__(self):
        for declared in fields(self):
            rule, value = declared.metadata.get("rule"), getattr(self, declared.name)
            if rule is not None and not rule.allows(value):
                raise ValueError(f"{card_name(declared)} must be {rule.describe()}, got {value!r}")

    def arguments(self, function) -> dict:
        """The parameters that ``function`` takes by name: a wrapped library's own, passed on by name."""
        taken = inspect.signature(function).parameters
        return {declared.name: getattr(self, declared.name) for declared in fields(self) if declared.name in taken}
