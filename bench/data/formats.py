"""Source formats: where each keeps its labels, and how its perturbation labels map to canonical ones.

| format | perturbation labels (obs column) | control | combination | gene symbols |
|---|---|---|---|---|
| ``perturbench`` | ``condition`` | ``control`` | ``A+B`` | ``var_names`` |
| ``gears`` (``perturb_processed.h5ad``) | ``condition`` | ``ctrl`` | ``A+B``; singles ``A+ctrl``, ``ctrl+B`` | ``var['gene_name']`` |
| ``scperturb`` | ``perturbation`` | ``control`` | ``A_B`` | ``var_names`` |
| ``h5ad`` (generic) | ``condition`` | ``ctrl`` | ``A+B`` | ``var_names`` |

A manifest's ``[keys]`` (or ``load_dataset``'s arguments) override these defaults. The default cell type
column is used when present; a cell type column named explicitly must exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.core.conditions import CONTROL, canonical
from bench.core.errors import DataError

DEFAULTS = {
    "perturbench": {"perturbation": "condition", "control": "control", "cell_type": "cell_type", "separator": "+"},
    "gears": {
        "perturbation": "condition",
        "control": "ctrl",
        "cell_type": "cell_type",
        "gene_symbols": "gene_name",
        "separator": "+",
    },
    "scperturb": {"perturbation": "perturbation", "control": "control", "cell_type": "cell_line", "separator": "_"},
    "h5ad": {"perturbation": "condition", "control": "ctrl", "cell_type": "cell_type", "separator": "+"},
}
KEY_NAMES = ("perturbation", "control", "cell_type", "gene_symbols", "separator", "subset")


@dataclass(frozen=True)
class Keys:
    """Where a file keeps its labels. Empty ``cell_type``/``gene_symbols``: none / ``var_names``."""

    perturbation: str
    control: str
    separator: str
    cell_type: str = ""
    cell_type_required: bool = False
    gene_symbols: str = ""
    subset: tuple[str, str] | None = None


def resolve_keys(fmt: str, keys: dict | None = None) -> Keys:
    """The format's defaults overridden by ``keys``."""
    if fmt not in DEFAULTS:
        raise DataError(f"format '{fmt}' is not an AnnData format; use one of {', '.join(DEFAULTS)}")
    keys = dict(keys or {})
    unknown = sorted(set(keys) - set(KEY_NAMES))
    if unknown:
        raise DataError(f"unknown key '{unknown[0]}' for format '{fmt}'; known keys: {', '.join(KEY_NAMES)}")
    merged = {**DEFAULTS[fmt], **keys}
    subset = merged.get("subset")
    if subset is not None:
        if not isinstance(subset, dict) or set(subset) != {"key", "value"}:
            raise DataError("keys.subset must be a table { key = \"obs column\", value = \"kept value\" }")
        subset = (str(subset["key"]), str(subset["value"]))
    for name in ("perturbation", "control", "separator"):
        if not isinstance(merged[name], str) or not merged[name]:
            raise DataError(f"key '{name}' of format '{fmt}' must be a non-empty string")
    return Keys(
        perturbation=merged["perturbation"],
        control=merged["control"],
        separator=merged["separator"],
        cell_type=merged.get("cell_type", ""),
        cell_type_required="cell_type" in keys and bool(keys["cell_type"]),
        gene_symbols=merged.get("gene_symbols", ""),
        subset=subset,
    )


def parse_condition(label: str, control: str, separator: str) -> str:
    """The canonical condition of one source label; ``ValueError`` with the reason when malformed."""
    label = label.strip()
    if label == control:
        return CONTROL
    tokens = [token.strip() for token in label.split(separator)]
    if not all(tokens):
        raise ValueError("an empty gene name")
    genes = [token for token in tokens if token != control]
    padded = len(tokens) == 2 and len(genes) == 1  # GEARS writes singles as 'A+ctrl' or 'ctrl+B'
    if len(genes) != len(tokens) and not padded:
        raise ValueError(f"the control label '{control}' mixed into a combination")
    if len(genes) > 2:
        raise ValueError(f"{len(genes)} genes; only single and double perturbations are supported")
    if len(set(genes)) < len(genes):
        raise ValueError("the same gene twice")
    if CONTROL in genes:
        raise ValueError(f"'{CONTROL}' is reserved for control cells and cannot name a gene")
    return canonical(genes)


def canonical_conditions(labels: pd.Series, keys: Keys, where: str) -> np.ndarray:
    """Canonical conditions of every cell's source label (each distinct label parsed once)."""
    column = f"obs['{keys.perturbation}']"
    if labels.isna().any():
        raise DataError(f"{where}: {int(labels.isna().sum())} cells have no label in {column}; drop or label them")
    codes, uniques = pd.factorize(labels.astype(str))
    mapped = []
    for label in uniques:
        try:
            mapped.append(parse_condition(label, keys.control, keys.separator))
        except ValueError as reason:
            example = f"'A' or 'A{keys.separator}B'"
            raise DataError(
                f"{where}: unknown condition syntax {label!r} in {column} ({reason}); "
                f"expected '{keys.control}', {example}"
            ) from None
    conditions = np.asarray(mapped, dtype=object)[codes]
    if CONTROL not in mapped:
        shown = ", ".join(repr(u) for u in list(uniques)[:4]) + (", ..." if len(uniques) > 4 else "")
        raise DataError(
            f"{where}: no control cells: no {column} equals '{keys.control}' (values: {shown}); "
            "set the control value (--control-value)"
        )
    return conditions
