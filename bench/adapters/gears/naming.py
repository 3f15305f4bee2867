"""Condition names between the harness and GEARS (Roohani et al., Nat Biotechnol 2024).

The harness writes ``ctrl``, ``A`` and ``A+B``. GEARS' data (``obs['condition']``) writes ``ctrl``,
``A+ctrl`` and ``A+B``, and also accepts the reversed forms ``ctrl+A`` and ``B+A`` (it only splits on
``+`` and drops ``ctrl``). ``GEARS.predict`` takes gene lists and keys its results by the genes joined
with ``_``: ``A`` and ``A_B``.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.core.conditions import CONTROL

GEARS_SEPARATOR = "+"
PREDICT_SEPARATOR = "_"


def gears_condition(genes: Sequence[str], reverse: bool = False) -> str:
    """GEARS' name for a perturbation of ``genes`` (graph node names): ``A+ctrl``/``A+B``, or, with
    ``reverse``, ``ctrl+A``/``B+A`` (the same perturbation under another name)."""
    if not genes:
        return CONTROL
    parts = [*genes, CONTROL] if len(genes) == 1 else list(genes)
    return GEARS_SEPARATOR.join(reversed(parts) if reverse else parts)


def predict_key(genes: Sequence[str]) -> str:
    """The key under which ``GEARS.predict([genes])`` returns its prediction."""
    return PREDICT_SEPARATOR.join(genes)
