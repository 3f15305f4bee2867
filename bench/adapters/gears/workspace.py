"""The files cell-gears reads, written from the harness's TrainData into a scratch folder per fit.

cell-gears (Roohani et al., Nat Biotechnol 2024) reads from its ``data_path``: ``gene2go_all.pkl``
(gene -> GO terms; downloaded from Harvard Dataverse when absent, so it is written first), the genes of
its perturbation graph (``gene_set_path``), and a ``custom`` split (a pickled ``{'train': [...], 'val':
[...], 'test': [...]}`` of its condition names). ``PertData.new_data_process`` then writes the
processed dataset (``<name>/perturb_processed.h5ad``, ``<name>/data_pyg/cell_graphs.pkl``) there too.

Only cells GEARS may learn from enter its data: the training and validation cells of one cell type.
GEARS builds one list of cell graphs per condition name, so validation cells are named in GEARS'
reversed form (``ctrl+A``, ``B+A``) and never share a list with training cells of the same perturbation
(the ``seen`` split holds out cells of training conditions). Test conditions are absent: GEARS predicts
from control cells and needs only their genes as graph nodes. GEARS' own test set is empty; the harness
scores predictions itself.
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import pandas as pd
import scipy.sparse as sp

from bench.adapters.gears.graph import PerturbationGraph
from bench.adapters.gears.naming import gears_condition
from bench.core.api import TrainData
from bench.core.conditions import CONTROL, genes_of

MIN_CELLS = 2  # GEARS ranks DE genes per condition with scanpy's t-test, which needs two cells
DATASET = "bench"


@dataclass
class Selection:
    """The cells of one cell type that GEARS learns from (canonical conditions)."""

    train: ad.AnnData
    val: ad.AnnData

    @property
    def seen(self) -> set[str]:
        """Genes perturbed in training."""
        return {g for c in self.train.obs["condition"].unique() for g in genes_of(c)}

    @property
    def validation_genes(self) -> set[str]:
        return {g for c in self.val.obs["condition"].unique() for g in genes_of(c)}


def _enough_cells(cells: ad.AnnData, where: str) -> ad.AnnData:
    counts = cells.obs["condition"].value_counts()
    few = sorted(counts.index[(counts > 0) & (counts < MIN_CELLS)])
    if few:
        print(f"gears: left out {where} condition(s) {', '.join(few)}: GEARS' DE ranking needs {MIN_CELLS} cells "
              "per condition", file=sys.stderr)
    return cells[~cells.obs["condition"].isin(few).to_numpy()]


def select(train: TrainData, cell_type: str) -> Selection:
    """Training cells and validation perturbation cells of ``cell_type`` (conditions with too few
    cells for GEARS' DE ranking left out, with a notice)."""
    cells = train.cells[(train.cells.obs["cell_type"].astype(str) == cell_type).to_numpy()]
    val_obs = train.val.obs
    val = train.val[((val_obs["cell_type"].astype(str) == cell_type) & (val_obs["condition"] != CONTROL)).to_numpy()]
    return Selection(_enough_cells(cells, "training"), _enough_cells(val, "validation"))


def _gears_layout(cells: ad.AnnData, conditions: pd.Series) -> ad.AnnData:
    obs = pd.DataFrame(
        {"condition": conditions.to_numpy(), "cell_type": cells.obs["cell_type"].astype(str).to_numpy()},
        index=cells.obs_names,
    )
    var = pd.DataFrame({"gene_name": list(cells.var_names)}, index=cells.var_names)
    return ad.AnnData(X=sp.csr_matrix(cells.X, dtype="float32"), obs=obs, var=var)


def gears_data(selection: Selection, graph: PerturbationGraph) -> tuple[ad.AnnData, dict[str, list[str]]]:
    """GEARS' AnnData (training cells as ``A+ctrl``/``A+B``, validation cells reversed) and its custom
    split. Without validation cells, GEARS selects its best epoch on the training conditions."""

    def names(cells: ad.AnnData, reverse: bool) -> pd.Series:
        mapping = {c: gears_condition(graph.nodes_of(c), reverse) for c in cells.obs["condition"].unique()}
        return cells.obs["condition"].astype(str).map(mapping)

    train_names, val_names = names(selection.train, False), names(selection.val, True)
    layouts = [_gears_layout(selection.train, train_names), _gears_layout(selection.val, val_names)]
    adata = ad.concat(layouts, merge="same")
    train_conditions = sorted(train_names.unique())
    val_conditions = sorted(val_names.unique()) or [c for c in train_conditions if c != CONTROL]
    return adata, {"train": train_conditions, "val": val_conditions, "test": []}


def control_anndata(control: ad.AnnData) -> ad.AnnData:
    """Held-out control cells in GEARS' layout: the cells ``GEARS.predict`` starts from."""
    return _gears_layout(control, pd.Series(CONTROL, index=control.obs_names))


@dataclass
class Inputs:
    data_path: Path
    gene_set: Path
    split: Path


def write_inputs(folder: Path, graph: PerturbationGraph, split: dict[str, list[str]]) -> Inputs:
    """Write ``gene2go_all.pkl``, the graph's gene list and the custom split into ``folder``."""
    data_path = folder / "data"
    data_path.mkdir()
    inputs = Inputs(data_path, folder / "perturbation_genes.pkl", folder / "split.pkl")
    for path, value in ((data_path / "gene2go_all.pkl", graph.gene2go), (inputs.gene_set, graph.nodes),
                        (inputs.split, split)):
        with open(path, "wb") as stream:
            pickle.dump(value, stream)
    return inputs
