"""Scouter (Zhu & Li, Nat Comput Sci 2025): the published ``scouter-learn`` 0.1.10 package trained on the
harness's frozen split through its own ``ScouterData`` and ``Scouter`` (``docs/scouter.md``).

Scouter sums the embeddings of a condition's perturbed genes (a row of zeros for ``ctrl``, as its tutorial
builds it), concatenates them with a control cell compressed by an MLP and generates the perturbed cell
with a second MLP. This adapter gives it the harness's gene features, the same as the other
gene-embedding models' (``bench.adapters.kit.gene_features``): a gene's row of its embedding table is its
Gene Ontology embedding followed by its loadings on the first ``n_components`` principal components of
the training pseudobulk. **A gene with neither (unannotated and unmeasured) gets a row of zeros**, the
``ctrl`` row: Scouter cannot tell its perturbation from none (a double reads its other gene's single's
embedding). Scouter's table is fixed at construction (``Scouter.__init__``); the query's genes
that training and validation did not perturb are appended to it at prediction (``_extend``).

Per cell type (Scouter has no cell-type input), one Scouter learns from the training cells and validates
on the validation conditions of that cell type (``train.val``, named reversed, ``ctrl+A``/``B+A``, so
that a validation condition never merges with the training condition of the same perturbation, as in the
``seen`` split): Scouter's ``split_Train_Val_Test(val_conds=...)`` gets them by name. Its early stopping
reads their loss, the value reported (negated) every epoch. A query for a cell type without a model is a
ModelError. Predictions start from the query's control cells (``Scouter.ctrl_adata``), ``n_pred`` of
them drawn with replacement by ``Scouter.pred`` from ``query.seed``; one call per condition, so every
condition of a query starts from the same cells. The means are of those predicted cells, which are
returned too; both are mapped to the query's genes by name.

Every call into the package runs inside ``bench.core.isolated_import.isolated``: it reseeds NumPy's global
generator (``BalancedDataset``, ``pred``), prints its epochs and tqdm bars, and reads
``obs['condition']`` whatever ``key_label`` it is given (``_utils.split_TrainVal``; this adapter names
the column ``condition``). Importing this module does not import ``scouter``.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from bench.adapters.kit.counterfactual_cells import cells_anndata
from bench.adapters.kit.gene_features import GeneFeatures
from bench.adapters.kit.params import Params, param
from bench.adapters.kit.torch_adapter import TorchAdapter
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import CONTROL, genes_of, perturbed_genes
from bench.core.errors import BenchWarning, ModelError
from bench.core.isolated_import import isolated

MODULE = "scouter"
KEY_LABEL = "condition"  # Scouter's split reads obs['condition'] whatever key_label says (_utils.py:50-51)
KEY_GENE_NAME = "gene_name"
KEY_EMBD_INDEX = "embd_index"
NONZERO_KEYS = ("gene_idx_non_zeros", "gene_idx_non_dropout")
MIN_CELLS = 2  # Scouter ranks genes per condition with scanpy's t-test (gene_ranks), which needs two cells
LAYERS = re.compile(r"^\s*(\d+\s*(,\s*\d+\s*)*)?$")


def layer_sizes(text: str) -> tuple[int, ...]:
    """A card's layer widths, ``"2048,512"``, as Scouter's tuple ``(2048, 512)``; ``""`` is ``()``."""
    return tuple(int(part) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class ScouterParams(Params):
    """Scouter's parameters and defaults, named as in ``Scouter.model_init`` (the network: hidden layer
    widths of the cell compressor ``n_encoder`` and generator ``n_decoder``, written ``"2048,512"`` for
    Scouter's tuple ``(2048, 512)``), ``Scouter.train`` (its loss ``loss_gamma``/``loss_lambda``, Adam's
    ``lr``, ``sched_gamma`` of its exponential schedule, at most ``n_epochs``, stopping after ``patience``
    epochs without a validation loss lower by 0.001; ``batch_size`` never exceeds a cell type's perturbed
    training cells, as Scouter drops an incomplete last batch) and ``Scouter.pred`` (``n_pred`` control
    cells per condition). ``n_components``: the data-derived gene features; ``threads``: torch's threads."""

    n_encoder: str = param("2048,512")
    n_out_encoder: int = param(64, "[1, inf)")
    n_decoder: str = param("2048")
    use_batch_norm: bool = param(True)
    use_layer_norm: bool = param(False)
    dropout_rate: float = param(0.0, "[0, 1)")
    nonzero_idx_key: str = param("gene_idx_non_zeros", choices=NONZERO_KEYS)
    batch_size: int = param(256, "[1, inf)")
    loss_gamma: float = param(0.0, "[0, inf)")
    loss_lambda: float = param(0.5, "[0, inf)")
    lr: float = param(1e-3, "(0, inf)")
    sched_gamma: float = param(0.9, "(0, 1]")
    n_epochs: int = param(40, "[1, inf)")
    patience: int = param(5, "[1, inf)")
    n_pred: int = param(300, "[1, inf)")
    n_components: int = param(10, "[1, inf)")
    threads: int = param(0, "[0, inf)")

    def __post_init__(self):
        super().__post_init__()
        for name in ("n_encoder", "n_decoder"):
            text = getattr(self, name)
            if not isinstance(text, str) or not LAYERS.match(text) or 0 in layer_sizes(text):
                raise ValueError(f"{name} must be layer widths of at least 1 separated by commas, e.g. '2048,512' "
                                 f"('' for none), got {text!r}")

    def network(self) -> dict:
        """``Scouter.model_init``'s arguments."""
        return {"n_encoder": layer_sizes(self.n_encoder), "n_out_encoder": self.n_out_encoder,
                "n_decoder": layer_sizes(self.n_decoder), "use_batch_norm": self.use_batch_norm,
                "use_layer_norm": self.use_layer_norm, "dropout_rate": self.dropout_rate}

    def training(self, perturbed_cells: int) -> dict:
        """``Scouter.train``'s arguments, the batch no larger than ``perturbed_cells``."""
        return {"nonzero_idx_key": self.nonzero_idx_key, "batch_size": min(self.batch_size, perturbed_cells),
                "loss_gamma": self.loss_gamma, "loss_lambda": self.loss_lambda, "lr": self.lr,
                "sched_gamma": self.sched_gamma, "n_epochs": self.n_epochs, "patience": self.patience}


def scouter_condition(condition: str, reverse: bool = False) -> str:
    """Scouter's name of a canonical condition: ``ctrl``, ``A+ctrl`` or ``A+B`` (``ctrl+A``, ``B+A`` reversed)."""
    genes = list(genes_of(condition))
    if len(genes) > 2:
        raise ModelError(f"Scouter predicts one- and two-gene perturbations, not '{condition}'")
    parts = [*genes, CONTROL] if len(genes) == 1 else genes
    return "+".join(reversed(parts) if reverse else parts) or CONTROL


def scouter_anndata(cells: ad.AnnData, names: list[str] | pd.Series) -> ad.AnnData:
    """``cells`` as Scouter reads them: sparse float32 ``X``, ``obs['condition']``, ``var['gene_name']``."""
    obs = pd.DataFrame({KEY_LABEL: np.asarray(names, dtype=object)}, index=cells.obs_names.astype(str))
    var = pd.DataFrame({KEY_GENE_NAME: list(cells.var_names)}, index=cells.var_names.astype(str))
    return ad.AnnData(X=sp.csr_matrix(cells.X, dtype=np.float32), obs=obs, var=var)


def embedding_table(features: GeneFeatures, genes: list[str]) -> pd.DataFrame:
    """Scouter's gene embedding table: a ``ctrl`` row of zeros (its tutorial's), then ``genes``' features."""
    go, data = features.lookup(genes)
    values = np.vstack([np.zeros((1, go.shape[1] + data.shape[1]), dtype=np.float32), np.hstack([go, data])])
    return pd.DataFrame(values, index=[CONTROL, *genes])


class EpochHistory(list):
    """A list for ``Scouter.loss_history`` that calls ``callback`` with every value Scouter appends."""

    def __init__(self, callback):
        super().__init__()
        self.callback = callback

    def append(self, value) -> None:
        super().append(value)
        self.callback(value)


class EpochReporter:
    """Scouter appends each epoch's training loss, then its validation loss (with validation conditions),
    to ``loss_history`` (Scouter.py:204-206): the first moves ``progress``, the second is reported negated.
    Steps continue from ``first_step`` so that one model per cell type reports one increasing sequence."""

    def __init__(self, train: TrainData, first_step: int, total: int):
        self.train, self.step, self.total = train, first_step, total
        train.progress("training", first_step, total)

    def history(self) -> dict[str, list]:
        return {"train_loss": EpochHistory(self.trained), "val_loss": EpochHistory(self.validated)}

    def trained(self, loss: float) -> None:
        self.step += 1
        self.train.progress("training", self.step, self.total)

    def validated(self, loss: float) -> None:
        self.train.report(self.step, -float(loss))


def _enough_cells(cells: ad.AnnData, where: str) -> ad.AnnData:
    counts = cells.obs["condition"].astype(str).value_counts()
    few = sorted(counts.index[(counts > 0) & (counts < MIN_CELLS)])
    if few:
        warnings.warn(f"scouter: left out {where} condition(s) {', '.join(few)}: Scouter's gene ranking needs "
                      f"{MIN_CELLS} cells per condition", BenchWarning)
    return cells[~cells.obs["condition"].astype(str).isin(few).to_numpy()]


class ScouterModel(TorchAdapter):
    """Parameters: ``ScouterParams``. One ``scouter.Scouter`` per cell type, its training data released."""

    Params = ScouterParams

    def _fit(self, train: TrainData) -> None:
        trained = sorted(perturbed_genes(train.conditions))
        if not trained:
            raise ModelError("Scouter needs perturbed training conditions; the training cells have none")
        self.features = GeneFeatures.fit(train, trained, self.params.n_components)
        if not self.features.go_dim + self.features.data_dim:
            raise ModelError("Scouter needs gene embeddings, but fewer than two perturbed training genes are measured "
                             "or have a Gene Ontology annotation (bench data fetch gene_ontology)")
        self.genes, self.models = train.genes, {}
        cell_types = sorted(train.cells.obs["cell_type"].astype(str).unique())
        epochs = self.params.n_epochs
        for number, cell_type in enumerate(cell_types):
            cells, val = self._select(train, cell_type)
            self.models[cell_type] = self._train(train, cells, val, EpochReporter(train, number * epochs,
                                                                                  len(cell_types) * epochs))
        trained_epochs = [len(model.loss_history["train_loss"]) for model in self.models.values()]
        train.diagnostics["epochs_trained"] = float(np.mean(trained_epochs))  # below n_epochs: stopped early

    @staticmethod
    def _select(train: TrainData, cell_type: str) -> tuple[ad.AnnData, ad.AnnData]:
        """The training cells and the perturbed validation cells of ``cell_type``, too-small conditions left out."""
        cells = train.cells[(train.cells.obs["cell_type"].astype(str) == cell_type).to_numpy()]
        obs = train.val.obs
        val = train.val[((obs["cell_type"].astype(str) == cell_type) & (obs["condition"] != CONTROL)).to_numpy()]
        cells, val = _enough_cells(cells, "training"), _enough_cells(val, "validation")
        conditions = set(cells.obs["condition"].astype(str))
        if CONTROL not in conditions:
            raise ModelError(f"Scouter needs at least {MIN_CELLS} training control cells of cell type '{cell_type}'")
        if conditions == {CONTROL}:
            raise ModelError(f"Scouter has no training perturbation of cell type '{cell_type}' to learn from")
        return cells, val

    def _train(self, train: TrainData, cells: ad.AnnData, val: ad.AnnData, reporter: EpochReporter):
        """Scouter's tutorial on the harness's cells: ScouterData, its setup, Scouter, model_init, train."""
        names = [scouter_condition(c) for c in cells.obs["condition"].astype(str)]
        val_names = [scouter_condition(c, reverse=True) for c in val.obs["condition"].astype(str)]
        adata = ad.concat([scouter_anndata(cells, names), scouter_anndata(val, val_names)], merge="same")
        if not adata.obs_names.is_unique:
            adata.obs_names_make_unique()
        adata.obs[KEY_LABEL] = adata.obs[KEY_LABEL].astype("category")
        embd = embedding_table(self.features, sorted(perturbed_genes([*cells.obs["condition"].astype(str),
                                                                       *val.obs["condition"].astype(str)])))
        perturbed = int((np.asarray(names) != CONTROL).sum())
        with tempfile.TemporaryDirectory(prefix="bench-scouter-") as scratch:
            with isolated(train.seed, Path(scratch), MODULE) as (library,):
                data = library.ScouterData(adata=adata, embd=embd, key_label=KEY_LABEL, key_var_genename=KEY_GENE_NAME)
                data.setup_ad(KEY_EMBD_INDEX)
                data.gene_ranks()
                data.get_dropout_non_zero_genes()
                data.split_Train_Val_Test(val_conds=sorted(set(val_names)), if_test=False)
                model = library.Scouter(data, device=train.device)
                model.model_init(**self.params.network())
                model.loss_history = reporter.history()
                model.train(**self.params.training(perturbed))
        model.loss_history = {key: list(values) for key, values in model.loss_history.items()}
        model.all_adata = model.train_adata = model.val_adata = model.test_adata = model.ctrl_adata = None
        return model

    def _predict(self, query: PredictQuery) -> Prediction:
        model = self.models.get(query.cell_type)
        if model is None:
            raise ModelError(f"Scouter was not trained on cell type '{query.cell_type}' (one model per cell type)")
        if sorted(query.genes) != sorted(self.genes):
            raise ModelError("Scouter was trained on other genes than the query's")
        if not query.control.n_obs:
            raise ModelError("the query has no control cells to start the prediction from")
        names = {condition: scouter_condition(condition) for condition in query.conditions}
        self._extend(model, sorted(perturbed_genes(query.conditions)))
        control = scouter_anndata(query.control[:, self.genes], [CONTROL] * query.control.n_obs)
        cells = []
        with tempfile.TemporaryDirectory(prefix="bench-scouter-") as scratch:
            with isolated(query.seed, Path(scratch), MODULE):
                model.ctrl_adata = control  # pred starts from these cells (its X must be sparse)
                try:
                    for condition in query.conditions:
                        name = names[condition]
                        cells.append(model.pred([name], n_pred=self.params.n_pred, seed=query.seed)[name])
                finally:
                    model.ctrl_adata = None
        order = pd.Index(self.genes).get_indexer(query.genes)  # Scouter's columns are the training genes
        cells = np.stack(cells)[:, :, order]
        means = pd.DataFrame(cells.mean(axis=1, dtype=np.float64), index=query.conditions, columns=query.genes)
        return Prediction(means=means, cells=cells_anndata(cells, query, query.genes))

    def _extend(self, model, genes: list[str]) -> None:
        """Append the features of ``genes`` missing from ``model``'s embedding table: Scouter looks a gene up
        in ``embd_idx_dict`` and reads that row of the fixed ``network.embd`` (Scouter.py:62-63, 265;
        _model.py:39, 64); existing rows, and so every other prediction, are unchanged."""
        missing = [g for g in genes if g not in model.embd_idx_dict]
        if not missing:
            return
        table = embedding_table(self.features, missing).to_numpy()[1:]
        embd = model.network.embd
        rows = torch.from_numpy(table).to(device=embd.device, dtype=embd.dtype)
        model.network.embd = torch.nn.Parameter(torch.cat([embd.detach(), rows]), requires_grad=False)
        model.embd_tensor = model.network.embd.detach().cpu()
        model.embd_idx_dict.update({gene: len(embd) + i for i, gene in enumerate(missing)})
