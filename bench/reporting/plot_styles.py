"""How leaderboard plots tell rows apart: one hue per model family, a shade per member, a hatch per preset.

A family is a card and the cards that extend it (``registry.family``), so an ablation or a tuned card
looks related to its parent and never like another model. Hues of the families on a board are spread
evenly around the colour wheel, so no two share one; within a family every row gets its own lightness,
and a row with a non-default preset (``[fast]``, ``[external]``) or with ``--param`` overrides is
hatched as well. Baselines are one family drawn in greys, and the data ceiling is a hollow hatched bar:
neither takes a hue from the models. An external model (``bench score``) is its own family.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.core.registry import all_cards, family
from bench.evaluation import ceiling

BASELINES = "baselines"
HATCHES = ("///", "...", "xxx", "\\\\\\", "ooo")
FIRST_HUE = 0.58  # blue, then round the wheel: the first family gets the most familiar colour
SATURATION = 0.75
LIGHTNESS = (32.0, 78.0)  # CIE L* of a family's darkest and lightest member
MIDDLE, STEP = 55.0, 20.0  # L* of a family of one, and the most between two members' L*


@dataclass(frozen=True)
class Style:
    face: tuple[float, float, float]
    edge: tuple[float, float, float]  # the outline, the hatch and the mark of a zero-height bar
    hatch: str | None


CEILING = Style(face=(1.0, 1.0, 1.0), edge=(0.2, 0.2, 0.2), hatch="///")


def family_of(model: str, baseline: bool, cards: dict) -> str:
    """The family a row is grouped (and coloured) with: the baselines, the ceiling, or a card family."""
    if model == ceiling.MODEL:
        return ceiling.LABEL
    return BASELINES if baseline else family(model, cards)


def _luminance(rgb: tuple[float, float, float]) -> float:
    """Relative luminance of an sRGB colour (WCAG 2.x; IEC 61966-2-1 linearisation)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def shade(hue: float, saturation: float, lightness: float) -> tuple[float, float, float]:
    """The colour of this HLS hue and saturation whose CIE L* is ``lightness``, found by bisection on the
    HLS lightness: equal L* reads as equally light across hues, so a yellow family's light members stay
    visible on white and its dark ones are as dark as a blue's."""
    target = ((lightness + 16) / 116) ** 3  # CIE 1976: L* -> relative luminance Y (L* > 8)
    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        darker = _luminance(colorsys.hls_to_rgb(hue, middle, saturation)) < target
        low, high = (middle, high) if darker else (low, middle)
    return colorsys.hls_to_rgb(hue, (low + high) / 2, saturation)


def _lightnesses(n: int) -> np.ndarray:
    """L* of ``n`` members: evenly spread around ``MIDDLE``, at most ``STEP`` apart, within ``LIGHTNESS``."""
    step = min(STEP, (LIGHTNESS[1] - LIGHTNESS[0]) / max(n - 1, 1))
    return MIDDLE + step * (np.arange(n) - (n - 1) / 2)


def styles(rows: pd.DataFrame) -> dict[str, Style]:
    """A style per ``label`` of ``rows`` (columns label, model and baseline, as in a ``leaderboard.cells``
    table), by family in the order of first appearance."""
    rows = rows.drop_duplicates("label")
    cards = all_cards()
    groups = rows.groupby([family_of(m, b, cards) for m, b in zip(rows["model"], rows["baseline"])], sort=False)
    hued = [name for name, _ in groups if name not in (BASELINES, ceiling.LABEL)]
    result = {}
    for name, members in groups:
        if name == ceiling.LABEL:
            result |= {label: CEILING for label in members["label"]}
            continue
        hue = (FIRST_HUE + hued.index(name) / len(hued)) % 1.0 if name in hued else 0.0
        saturation = 0.0 if name == BASELINES else SATURATION
        hatches = iter(HATCHES * len(members))
        for (label, model), lightness in zip(zip(members["label"], members["model"]), _lightnesses(len(members))):
            plain = label == model  # the default preset, no --param overrides
            edge = lightness - 25 if lightness >= 50 else lightness + 30  # a hatch that shows on the face
            result[label] = Style(face=shade(hue, saturation, lightness), edge=shade(hue, saturation, edge),
                                  hatch=None if plain else next(hatches))
    return result
