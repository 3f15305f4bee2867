"""scBIG's card parameters, flat as cards and ``--param`` name them, as one settings object per component.

A component's settings are a dataclass whose fields are made by ``setting``: the default, the allowed
values and, where it differs from the field's name, the card's name. Each checks itself when made
(``check`` in its ``__post_init__``): a value out of range is a one-line ValueError naming the card
parameter and what it allows. ``signature`` lists all fields flat, as the adapter's constructor
signature (the registry checks names and types against it); ``build`` makes the groups.
"""

from __future__ import annotations

import inspect
from dataclasses import Field, field, fields

RULES = {">= 1": lambda v: v >= 1, ">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0,
         "in [0, 1)": lambda v: 0 <= v < 1}


def setting(default: object, allowed: str | tuple = "", param: str = "") -> Field:
    """A settings field: ``allowed`` is a key of ``RULES``, a tuple of values or "" (any)."""
    return field(default=default, metadata={"allowed": allowed, "param": param})


def param_name(f: Field) -> str:
    return f.metadata.get("param") or f.name


def check(settings: object) -> None:
    for f in fields(settings):
        allowed, value = f.metadata.get("allowed", ""), getattr(settings, f.name)
        if isinstance(allowed, tuple) and value not in allowed:
            raise ValueError(f"{param_name(f)} must be one of {', '.join(allowed)}; got {value!r}")
        if isinstance(allowed, str) and allowed and not RULES[allowed](value):
            raise ValueError(f"{param_name(f)} must be {allowed}; got {value!r}")


def signature(groups: tuple[type, ...]) -> inspect.Signature:
    return inspect.Signature([inspect.Parameter(param_name(f), inspect.Parameter.KEYWORD_ONLY, default=f.default)
                              for group in groups for f in fields(group)])


def build(groups: tuple[type, ...], params: dict) -> list:
    """One settings object per group from flat card parameters (defaults for those not given)."""
    unknown = sorted(set(params) - set(signature(groups).parameters))
    if unknown:
        raise TypeError(f"unknown parameter {unknown[0]!r}; allowed: {', '.join(signature(groups).parameters)}")
    return [group(**{f.name: params[param_name(f)] for f in fields(group) if param_name(f) in params})
            for group in groups]
