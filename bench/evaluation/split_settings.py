"""The split settings by name, each in words; apart from ``bench.evaluation.splits`` so that ``bench list``
reads them, and options are checked, without importing AnnData."""

from bench.core.did_you_mean import unknown
from bench.core.errors import SplitError

DESCRIPTIONS = {
    "seen": "a held-out share of the cells of every training condition (in-distribution ceiling)",
    "unseen_single": "single perturbations of genes never seen in training",
    "unseen_double": "doubles with neither gene seen (GEARS combo_seen0)",
    "combo_seen1": "doubles with exactly one gene seen",
    "combo_seen2": "doubles with both genes seen, the pair never trained on",
    "simulation": "GEARS' simulation split: all four unseen settings at once, subgroup-labelled",
    "additive": "all singles and half the doubles train, the other doubles test (Ahlmann-Eltze 2025)",
}

SPLITS = tuple(DESCRIPTIONS)


def check_name(name: str) -> str:
    if name not in SPLITS:
        raise SplitError(unknown("split", name, SPLITS, "see `bench list splits`"))
    return name
