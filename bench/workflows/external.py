"""Predictions made outside the harness: what ``bench export`` writes for a model trained elsewhere, and
the predictions file ``bench score`` reads back, checked against the split it claims to answer.

An export folder holds the frozen split's training, validation and query-control cells (``.h5ad``,
``obs['condition']`` and ``obs['cell_type']``, as scanpy and cell-eval read them), the test conditions
to predict (``conditions.csv``) and the split itself (``split.json``). The test cells stay hidden.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from bench.core import h5ad, outputs
from bench.core.conditions import CONTROL
from bench.core.errors import BenchError
from bench.data.loaders import repeated_names_allowed
from bench.evaluation import splits
from bench.evaluation.split_data import SplitData
from bench.workflows import prediction_files

CELLS = ("train", "val", "query_control")
CONDITIONS = "conditions.csv"


def test_conditions(data: SplitData) -> pd.DataFrame:
    """The (cell_type, condition, subgroup) rows to predict, sorted."""
    obs = data.test.obs[["cell_type", "condition"]].astype(str).drop_duplicates()
    obs["subgroup"] = obs["condition"].map(data.subgroups)
    return obs.sort_values(["cell_type", "condition"]).reset_index(drop=True)


def export(split: splits.Split, data: SplitData, out: Path) -> list[Path]:
    """Write the export folder ``out`` whole or not at all; an existing non-empty folder is refused, and a
    folder that cannot be written is a one-line ``BenchError``."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"--out {out} already exists and is not an empty folder; name a new folder")
    staging = out.with_name(f".{out.name}.{secrets.token_hex(8)}.tmp")
    with outputs.writing(out.parent, "the export"):
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        try:
            for name in CELLS:
                h5ad.write(staging / f"{name}.h5ad", getattr(data, name).copy())  # a view: its rows only
            test_conditions(data).to_csv(staging / CONDITIONS, index=False)
            (staging / "split.json").write_text(split.to_json())
            if out.exists():
                out.rmdir()
            os.replace(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return sorted(out.iterdir())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(path: Path) -> ad.AnnData:
    if not path.is_file():
        raise BenchError(f"predictions file {path} does not exist")
    try:
        with repeated_names_allowed():  # cells need no unique names; _check_genes checks the genes
            return ad.read_h5ad(path)
    except Exception as exc:  # h5py and anndata raise many types for a file that is not an h5ad
        raise BenchError(f"cannot read {path} as an .h5ad file ({type(exc).__name__}: {exc})") from None


def _check_genes(adata: ad.AnnData, genes: list[str], path: Path) -> None:
    found = list(adata.var_names.astype(str))
    if found == genes:
        return
    known, wanted = set(found), set(genes)
    missing, extra = [g for g in genes if g not in known], [g for g in found if g not in wanted]
    if not missing and not extra and len(found) == len(genes):
        raise BenchError(f"{path}: genes are in a different order than the dataset's; reorder them with "
                         f"adata[:, genes], genes in the order of train.h5ad's var_names")
    detail = f"{len(missing)} of the dataset's genes missing (e.g. {missing[0]!r})" if missing else ""
    detail += ("; " if missing and extra else "") + (f"{len(extra)} unknown (e.g. {extra[0]!r})" if extra else "")
    raise BenchError(f"{path}: var_names must be the dataset's {len(genes)} genes in order; {detail}")


def _cell_types(adata: ad.AnnData, wanted: pd.DataFrame, path: Path) -> np.ndarray:
    if "cell_type" in adata.obs:
        return adata.obs["cell_type"].astype(str).to_numpy()
    kinds = sorted(wanted["cell_type"].unique())
    if len(kinds) > 1:
        raise BenchError(f"{path}: obs['cell_type'] is needed, the test conditions span cell types {kinds}")
    return np.full(adata.n_obs, kinds[0])


def _conditions(adata: ad.AnnData) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per row of a predictions file its condition and whether it is a prediction (not a control), and
    whether the rows are cells."""
    made_here = prediction_files.kind(adata)
    if made_here == "means":
        keep = (adata.obs["subgroup"].astype(str) != prediction_files.CONTROL_SUBGROUP).to_numpy()
        return adata.obs["condition"].astype(str).to_numpy(), keep, False
    column, control = ((prediction_files.PERT_COL, prediction_files.CONTROL_PERT) if made_here == "cells"
                       else ("condition", CONTROL))
    holds_cells = column in adata.obs
    conditions = (adata.obs[column] if holds_cells else adata.obs_names.to_series()).astype(str).to_numpy()
    return conditions, conditions != control, holds_cells


def read_predictions(
    path: Path, wanted: pd.DataFrame, genes: list[str], where: str
) -> tuple[pd.DataFrame, dict[str, ad.AnnData] | None]:
    """Predicted means indexed by (cell_type, condition) in the order of ``wanted``, and the predicted
    cells per cell type when the file holds cells.

    A run's own ``predictions.h5ad`` and ``predicted_cells.h5ad`` (``bench.workflows.prediction_files``) are read
    as such, their control rows and cells ignored. Any other file with ``obs['condition']`` holds
    predicted cells (control cells, as cell-eval files carry them, are ignored); without it, each row is
    a condition's predicted mean, named by ``obs_names``. ``where`` names the split and seed in errors.
    """
    adata = _read(path)
    _check_genes(adata, genes, path)
    conditions, keep, holds_cells = _conditions(adata)
    cell_types = _cell_types(adata, wanted, path)
    adata, conditions, cell_types = adata[keep], conditions[keep], cell_types[keep]
    values = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    keys = pd.MultiIndex.from_arrays([cell_types, conditions], names=["cell_type", "condition"])
    if not holds_cells and keys.has_duplicates:
        raise BenchError(f"{path}: condition {keys[keys.duplicated()][0][1]!r} has two rows; give one mean per "
                         "condition, or predicted cells with obs['condition']")
    expected = pd.MultiIndex.from_frame(wanted[["cell_type", "condition"]])
    missing, extra = expected.difference(keys), keys.unique().difference(expected)
    if len(extra):
        raise BenchError(f"{path} predicts {len(extra)} condition(s) outside the test set of {where}, e.g. "
                         f"{extra[0][1]!r}; was it made for another split or seed? (`bench export` lists the "
                         f"conditions to predict in {CONDITIONS})")
    if len(missing):
        raise BenchError(f"{path} has no prediction for {len(missing)} test condition(s) of {where}, e.g. "
                         f"{missing[0][1]!r} (all are listed in {CONDITIONS} of `bench export`)")
    if not np.isfinite(values).all():
        bad = keys[~np.isfinite(values).all(axis=1)][0][1]
        raise BenchError(f"{path} holds NaN or infinite values, e.g. for condition {bad!r}")
    table = pd.DataFrame(values.astype(np.float64), index=keys, columns=genes).groupby(level=[0, 1]).mean()
    cells = None
    if holds_cells:
        cells = {}
        for kind in np.unique(cell_types):
            subset = adata[cell_types == kind].copy()
            subset.obs = pd.DataFrame({"condition": conditions[cell_types == kind]}, index=subset.obs_names)
            cells[kind] = subset
    return table.loc[expected], cells
