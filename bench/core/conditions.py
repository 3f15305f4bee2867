"""Canonical perturbation conditions: ``ctrl``, ``A`` or ``A+B`` with the two genes sorted.

Every loader maps its source syntax to this form, and everything downstream (splits, metrics,
adapters) only ever sees canonical conditions.
"""

from __future__ import annotations

from collections.abc import Iterable

CONTROL = "ctrl"
SEPARATOR = "+"


def canonical(genes: Iterable[str]) -> str:
    """The canonical condition perturbing ``genes`` (an empty set is the control)."""
    unique = sorted(set(genes))
    return SEPARATOR.join(unique) if unique else CONTROL


def genes_of(condition: str) -> tuple[str, ...]:
    """The perturbed genes of a canonical condition (empty for the control)."""
    if condition == CONTROL:
        return ()
    return tuple(condition.split(SEPARATOR))


def is_single(condition: str) -> bool:
    return len(genes_of(condition)) == 1


def is_double(condition: str) -> bool:
    return len(genes_of(condition)) == 2


def perturbed_genes(conditions: Iterable[str]) -> set[str]:
    """Every gene perturbed by any of ``conditions``."""
    return {gene for condition in conditions for gene in genes_of(condition)}
