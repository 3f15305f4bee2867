"""How each split setting assigns perturbation conditions to train, test or excluded.

A gene is *seen* when any training condition perturbs it. Subgroup labels are never assigned by hand:
``label`` computes them from the final training set, so they always agree with their definitions.
The ``simulation`` rule follows GEARS (Roohani et al., Nat Biotech 2024, ``gears/data_utils.py``
``get_simulation_split``): 75% of perturbed genes are training genes, conditions are grouped by how
many of their genes are training genes, and 25% of the both-seen doubles go to test.
``additive`` follows Ahlmann-Eltze et al. (Nat Methods 2025): all singles and half of the doubles
train, the other doubles test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from bench.core.conditions import genes_of, is_double, is_single, perturbed_genes
from bench.core.errors import SplitError

TEST_GENE_FRACTION = 0.25
COMBO_SEEN2_TEST_FRACTION = 0.25
ADDITIVE_TEST_FRACTION = 0.5

SUBGROUPS = ("seen", "unseen_single", "combo_seen0", "combo_seen1", "combo_seen2")
DEFINITIONS = {  # what ``label`` assigns, in words (GEARS names them the same: gears/data_utils.py)
    "seen": "perturbations also trained on, scored on held-out cells (split 'seen')",
    "unseen_single": "single perturbations of a gene that no training perturbation touches",
    "combo_seen0": "doubles with neither gene perturbed in training",
    "combo_seen1": "doubles with one of their two genes perturbed in training",
    "combo_seen2": "doubles with both genes perturbed in training, never the pair itself",
}


def label(condition: str, seen: set[str]) -> str:
    """The subgroup of a test condition given the genes seen in training."""
    genes = genes_of(condition)
    if len(genes) == 1:
        return "seen" if genes[0] in seen else "unseen_single"
    return f"combo_seen{sum(g in seen for g in genes)}"


Assignment = tuple[list[str], list[str]]  # (test candidates, excluded)
Rule = Callable[[Sequence[str], np.random.Generator], Assignment]


def _count(size: float, available: int) -> int:
    """``size`` rounded half up, at least one and at most ``available`` (zero when none are)."""
    return min(available, max(1, math.floor(size + 0.5))) if available else 0


def _sample(items: Sequence[str], size: float, rng: np.random.Generator) -> list[str]:
    """A seeded sample of ``size`` of ``items`` (see ``_count``)."""
    items = sorted(items)
    if not items:
        return []
    return sorted(rng.choice(items, size=_count(size, len(items)), replace=False).tolist())


def _share(items: Sequence[str], fraction: float, rng: np.random.Generator) -> list[str]:
    return _sample(items, fraction * len(items), rng)


def _by_test_genes(
    conditions: Sequence[str], test_genes: set[str], keep: Callable[[int, str], bool]
) -> Assignment:
    """Conditions touching ``test_genes``: those whose count of test genes passes ``keep`` are test
    candidates, the others are excluded (training on them would make their genes seen)."""
    test, excluded = [], []
    for condition in conditions:
        hits = sum(g in test_genes for g in genes_of(condition))
        if hits:
            (test if keep(hits, condition) else excluded).append(condition)
    return test, excluded


def simulation(conditions: Sequence[str], rng: np.random.Generator) -> Assignment:
    genes = sorted(perturbed_genes(conditions))
    train_genes = set(_share(genes, 1 - TEST_GENE_FRACTION, rng))
    test = [c for c in conditions if any(g not in train_genes for g in genes_of(c))]
    both_seen = [c for c in conditions if is_double(c) and c not in test]
    test += _share(both_seen, COMBO_SEEN2_TEST_FRACTION, rng)
    return sorted(test), []


def unseen_single(conditions: Sequence[str], rng: np.random.Generator) -> Assignment:
    with_single = sorted(perturbed_genes(c for c in conditions if is_single(c)))
    test_genes = set(_share(with_single, TEST_GENE_FRACTION, rng))
    return _by_test_genes(conditions, test_genes, lambda hits, c: is_single(c))


def unseen_double(conditions: Sequence[str], rng: np.random.Generator) -> Assignment:
    doubles = sorted(c for c in conditions if is_double(c))
    target = TEST_GENE_FRACTION * len(perturbed_genes(conditions))
    test_genes: set[str] = set()
    for index in rng.permutation(len(doubles)):
        test_genes.update(genes_of(doubles[index]))
        if len(test_genes) >= target:
            break
    return _by_test_genes(conditions, test_genes, lambda hits, c: is_double(c) and hits == 2)


def combo_seen1(conditions: Sequence[str], rng: np.random.Generator) -> Assignment:
    in_doubles = sorted(perturbed_genes(c for c in conditions if is_double(c)))
    test_genes = set(_sample(in_doubles, TEST_GENE_FRACTION * len(perturbed_genes(conditions)), rng))
    return _by_test_genes(conditions, test_genes, lambda hits, c: is_double(c) and hits == 1)


def combo_seen2(conditions: Sequence[str], rng: np.random.Generator) -> Assignment:
    doubles = sorted(c for c in conditions if is_double(c))
    wanted = _count(COMBO_SEEN2_TEST_FRACTION * len(doubles), len(doubles))
    test: list[str] = []
    for index in rng.permutation(len(doubles)):
        candidate = doubles[index]
        remaining = [c for c in conditions if c != candidate and c not in test]
        if set(genes_of(candidate)) <= perturbed_genes(remaining):
            test.append(candidate)
            if len(test) == wanted:
                break
    return sorted(test), []


def additive(conditions: Sequence[str], rng: np.random.Generator) -> Assignment:
    singles = set(c for c in conditions if is_single(c))
    candidates = [c for c in conditions if is_double(c) and set(genes_of(c)) <= singles]
    return _share(candidates, ADDITIVE_TEST_FRACTION, rng), []


RULES: dict[str, tuple[Rule, tuple[str, ...]]] = {
    "simulation": (simulation, ("unseen_single", "combo_seen0", "combo_seen1", "combo_seen2")),
    "unseen_single": (unseen_single, ("unseen_single",)),
    "unseen_double": (unseen_double, ("combo_seen0",)),
    "combo_seen1": (combo_seen1, ("combo_seen1",)),
    "combo_seen2": (combo_seen2, ("combo_seen2",)),
    "additive": (additive, ("combo_seen2",)),
}


def assign(rule: str, conditions: Sequence[str], rng: np.random.Generator) -> tuple[list[str], dict[str, str], list[str]]:
    """Apply a rule: (training conditions, test condition -> subgroup, excluded conditions).

    Test candidates whose computed subgroup is not one the setting asks for are excluded rather than
    mislabelled. An empty test set is an error, never a silent result.
    """
    function, wanted = RULES[rule]
    candidates, excluded = function(list(conditions), rng)
    train = sorted(set(conditions) - set(candidates) - set(excluded))
    seen = perturbed_genes(train)
    test: dict[str, str] = {}
    for condition in candidates:
        subgroup = label(condition, seen)
        if subgroup in wanted:
            test[condition] = subgroup
        else:
            excluded.append(condition)
    if not test:
        raise SplitError(
            f"split '{rule}' cannot be made here: no condition qualifies as {' or '.join(wanted)} "
            f"among {len(conditions)} perturbation conditions; choose another split"
        )
    return train, test, sorted(excluded)
