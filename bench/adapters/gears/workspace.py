"""The cells, condition names and files cell-gears reads, from the harness's TrainData (``docs/gears.md``).

GEARS' data names conditions ``ctrl``, ``A+ctrl``, ``A+B`` (or reversed, ``ctrl+A``, ``B+A``) and builds one
list of cell graphs per name: validation cells take the reversed names, so that they never share a list
with training cells of the same perturbation (the ``seen`` split). ``GEARS.predict`` keys by ``A_B``.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import anndata as ad
import pandas as pd
import scipy.sparse as sp

from bench.adapters.gears.graph import PerturbationGraph
from bench.core.api import TrainData
from bench.core.conditions import CONTROL

MIN_CELLS = 2  # GEARS ranks DE genes per condition with scanpy's t-test, which needs two cells
DATASET = "bench"


def gears_condition(genes: Sequence[str], reverse: bool = False) -> str:
    """GEARS' name for a perturbation of ``genes`` (graph nodes): ``A+ctrl``/``A+B``, or ``ctrl+A``/``B+A``."""
    parts = [*genes, CONTROL] if len(genes) == 1 else list(genes)
    return "+".join(reversed(parts) if reverse else parts) or CONTROL


def predict_key(genes: Sequence[str]) -> str:
    """The key under which ``GEARS.predict([genes])`` returns its prediction."""
    return "_".join(genes)


class Selection(NamedTuple):
    """The training cells and validation perturbation cells of one cell type (canonical conditions)."""

    train: ad.AnnData
    val: ad.AnnData


def _enough_cells(cells: ad.AnnData, where: str) -> ad.AnnData:
    counts = cells.obs["condition"].value_counts()
    few = sorted(counts.index[(counts > 0) & (counts < MIN_CELLS)])
    if few:
        print(f"gears: left out {where} condition(s) {', '.join(few)}: GEARS' DE ranking needs {MIN_CELLS} cells "
              "per condition", file=sys.stderr)
    return cells[~cells.obs["condition"].isin(few).to_numpy()]


def select(train: TrainData, cell_type: str) -> Selection:
    """What GEARS learns from in ``cell_type``, conditions with too few cells left out (with a notice)."""
    cells = train.cells[(train.cells.obs["cell_type"].astype(str) == cell_type).to_numpy()]
    val_obs = train.val.obs
    val = train.val[((val_obs["cell_type"].astype(str) == cell_type) & (val_obs["condition"] != CONTROL)).to_numpy()]
    return Selection(_enough_cells(cells, "training"), _enough_cells(val, "validation"))


def _gears_layout(cells: ad.AnnData, conditions: pd.Series) -> ad.AnnData:
    obs = pd.DataFrame({"condition": conditions.to_numpy(), "cell_type": cells.obs["cell_type"].astype(str).to_numpy()},
                       index=cells.obs_names)
    var = pd.DataFrame({"gene_name": list(cells.var_names)}, index=cells.var_names)
    return ad.AnnData(X=sp.csr_matrix(cells.X, dtype="float32"), obs=obs, var=var)


def gears_data(selection: Selection, graph: PerturbationGraph) -> tuple[ad.AnnData, dict[str, list[str]]]:
    """GEARS' AnnData (training cells as ``A+ctrl``/``A+B``, validation cells reversed) and its ``custom``
    split, without test conditions. Without validation cells GEARS selects its epoch on the training ones."""

    def names(cells: ad.AnnData, reverse: bool) -> pd.Series:
        mapping = {c: gears_condition(graph.nodes_of(c), reverse) for c in cells.obs["condition"].unique()}
        return cells.obs["condition"].astype(str).map(mapping)

    train_names, val_names = names(selection.train, False), names(selection.val, True)
    adata = ad.concat([_gears_layout(selection.train, train_names), _gears_layout(selection.val, val_names)],
                      merge="same")
    train_conditions = sorted(train_names.unique())
    val_conditions = sorted(val_names.unique()) or [c for c in train_conditions if c != CONTROL]
    return adata, {"train": train_conditions, "val": val_conditions, "test": []}


def control_anndata(control: ad.AnnData) -> ad.AnnData:
    """Held-out control cells in GEARS' layout: the cells ``GEARS.predict`` starts from."""
    return _gears_layout(control, pd.Series(CONTROL, index=control.obs_names))


def write_inputs(folder: Path, graph: PerturbationGraph, split: dict[str, list[str]]) -> tuple[Path, Path, Path]:
    """Write GEARS' ``data_path`` with ``gene2go_all.pkl`` (else downloaded), its ``gene_set_path`` (the
    graph's nodes) and its ``split_dict_path`` into ``folder``; return the three paths."""
    paths = (folder / "data", folder / "perturbation_genes.pkl", folder / "split.pkl")
    paths[0].mkdir()
    for path, value in ((paths[0] / "gene2go_all.pkl", graph.gene2go), (paths[1], graph.nodes), (paths[2], split)):
        with open(path, "wb") as stream:
            pickle.dump(value, stream)
    return paths
