"""GEARS trained on the harness's frozen split, offline: per cell type (GEARS has no cell-type input and
pairs each perturbed cell with a random control of its whole dataset), cell-gears' own ``PertData`` and
``GEARS`` train on the files of ``workspace`` with the graph of ``graph``, fenced by ``isolated``. GEARS
keeps its epoch of lowest validation MSE on the top 20 DE genes, the value reported (negated) every epoch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import NamedTuple

from bench.adapters.gears import workspace
from bench.adapters.gears.compat import EpochReporter, install_go_rows, pandas_indexable
from bench.adapters.kit.effects import prediction
from bench.adapters.gears.graph import GRAPHS, UNIVERSES, PerturbationGraph, build, edge_tensors
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import CONTROL, perturbed_genes
from bench.core.errors import ModelError
from bench.core.isolated_import import isolated

MODULES = ("gears", "gears.utils")
COUNTS = ("hidden_size", "epochs", "batch_size", "eval_batch_size", "num_go_gnn_layers", "num_gene_gnn_layers",
          "decoder_hidden_size", "num_similar_genes_go_graph", "num_similar_genes_co_express_graph")
NETWORK = ("hidden_size", "num_go_gnn_layers", "num_gene_gnn_layers", "decoder_hidden_size",  # model_initialize's
           "num_similar_genes_go_graph", "num_similar_genes_co_express_graph", "coexpress_threshold",
           "direction_lambda")


class FittedGears(NamedTuple):
    """One trained ``gears.GEARS`` (training data released), its perturbation graph and genes."""

    gears: object
    graph: PerturbationGraph
    genes: list[str]


class GearsModel:
    """GEARS' parameters, named as in ``GEARS.model_initialize``, ``GEARS.train`` and
    ``PertData.get_dataloader`` (``eval_batch_size`` is its ``test_batch_size``, used for validation; a
    batch never exceeds a cell type's training cells, as GEARS drops an incomplete last batch);
    ``perturbation_graph`` and ``gene_universe``: see ``bench.adapters.gears.graph``."""

    def __init__(self, hidden_size: int = 64, epochs: int = 20, lr: float = 1e-3, weight_decay: float = 5e-4,
                 batch_size: int = 32, eval_batch_size: int = 128, num_go_gnn_layers: int = 1,
                 num_gene_gnn_layers: int = 1, decoder_hidden_size: int = 16, num_similar_genes_go_graph: int = 20,
                 num_similar_genes_co_express_graph: int = 20, coexpress_threshold: float = 0.4,
                 direction_lambda: float = 0.1, perturbation_graph: str = "auto", gene_universe: str = "genome"):
        params = {name: value for name, value in locals().items() if name != "self"}
        small = [name for name in COUNTS if params[name] < 1]
        if small:
            raise ValueError(f"{small[0]} must be at least 1")
        if lr <= 0 or weight_decay < 0 or direction_lambda < 0 or not 0 <= coexpress_threshold < 1:
            raise ValueError("lr must be > 0, weight_decay and direction_lambda >= 0, coexpress_threshold in [0, 1)")
        for name, allowed in (("perturbation_graph", GRAPHS), ("gene_universe", UNIVERSES)):
            if params[name] not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not '{params[name]}'")
        self.params = params
        self.network = {name: params[name] for name in NETWORK}
        self.models: dict[str, FittedGears] = {}

    def fit(self, train: TrainData) -> None:
        self.models, epochs = {}, self.params["epochs"]
        cell_types = sorted(train.cells.obs["cell_type"].astype(str).unique())
        for number, cell_type in enumerate(cell_types):
            train.progress("preparing GEARS' data and graph")
            selection = workspace.select(train, cell_type)
            if set(selection.train.obs["condition"]) <= {CONTROL}:
                raise ModelError(f"GEARS has no training perturbation of cell type '{cell_type}' to learn from")
            graph = build(self.params["perturbation_graph"], train.gene_knowledge,
                          perturbed_genes(selection.train.obs["condition"].unique()), train.genes,
                          self.params["gene_universe"], perturbed_genes(selection.val.obs["condition"].unique()))
            graph.check(selection.val.obs["condition"].unique())
            gears = self._train(selection, graph, train, number * epochs, len(cell_types) * epochs)
            self.models[cell_type] = FittedGears(gears, graph, train.genes)

    def _train(self, selection: workspace.Selection, graph: PerturbationGraph, train: TrainData, first_step: int,
               total_epochs: int):
        adata, split = workspace.gears_data(selection, graph)
        top_k = self.network["num_similar_genes_go_graph"]
        edges = graph.go_edges(top_k) if graph.kind == "go" else None
        with tempfile.TemporaryDirectory(prefix="bench-gears-") as scratch:
            data_path, gene_set, split_path = workspace.write_inputs(Path(scratch), graph, split)
            with isolated(train.seed, Path(scratch), *MODULES) as (library, utils):
                pert_data = library.PertData(str(data_path), gene_set_path=str(gene_set))
                pert_data.new_data_process(dataset_name=workspace.DATASET, adata=adata)
                pert_data.prepare_split(split="custom", split_dict_path=str(split_path))
                batch_size = min(self.params["batch_size"], selection.train.n_obs)  # GEARS drops a short last batch
                pert_data.get_dataloader(batch_size=batch_size, test_batch_size=self.params["eval_batch_size"])
                del pert_data.dataloader["test_loader"]  # empty; GEARS would evaluate it after training
                pert_data.adata.X = pandas_indexable(pert_data.adata.X)
                gears = library.GEARS(pert_data, device=train.device)
                if edges is None:  # GEARS' co-expression graph of the measured genes
                    edges = utils.get_similarity_network(
                        network_type="co-express", adata=pert_data.adata, threshold=self.network["coexpress_threshold"],
                        k=top_k, data_path=pert_data.data_path, data_name=pert_data.dataset_name, split=pert_data.split,
                        seed=pert_data.seed, train_gene_set_size=pert_data.train_gene_set_size,
                        set2conditions=pert_data.set2conditions)
                g_go, g_go_weight = edge_tensors(edges, pert_data.node_map_pert)
                gears.model_initialize(**self.network, G_go=g_go, G_go_weight=g_go_weight)
                install_go_rows(gears.model)
                gears.wandb = EpochReporter(train.report, first_step, train.progress, total_epochs)
                gears.train(epochs=self.params["epochs"], lr=self.params["lr"],
                            weight_decay=self.params["weight_decay"])
        gears.wandb = None
        gears.dataloader, gears.adata, gears.ctrl_adata = {}, None, None  # training data, no longer needed
        return gears

    def predict(self, query: PredictQuery) -> Prediction:
        fitted = self.models.get(query.cell_type)
        if fitted is None:
            raise ModelError(f"GEARS was not trained on cell type '{query.cell_type}' (one model per cell type)")
        if query.genes != fitted.genes:
            raise ModelError("GEARS was trained on other genes than the query's")
        fitted.graph.check(query.conditions)
        gears, means = fitted.gears, {}
        with tempfile.TemporaryDirectory(prefix="bench-gears-") as folder, isolated(query.seed, Path(folder), *MODULES):
            gears.adata = workspace.control_anndata(query.control)
            for condition in query.conditions:
                nodes = fitted.graph.nodes_of(condition)
                gears.saved_pred = {}  # GEARS caches predictions by key, whatever cells they started from
                means[condition] = gears.predict([nodes])[workspace.predict_key(nodes)]
            gears.adata = gears.ctrl_adata = None
        return prediction(query, means)
