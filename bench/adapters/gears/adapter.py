"""GEARS trained on the harness's frozen split, offline: per cell type (GEARS has no cell-type input and
pairs each perturbed cell with a random control of its whole dataset), cell-gears' own ``PertData`` and
``GEARS`` train on the files of ``workspace`` with the graph of ``graph``, fenced by ``isolated``. GEARS
keeps its epoch of lowest validation MSE on the top 20 DE genes, the value reported (negated) every epoch.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from bench.adapters.gears import workspace
from bench.adapters.gears.compat import EpochReporter, PandasIndexCSR, install_go_rows
from bench.adapters.gears.graph import GRAPHS, UNIVERSES, PerturbationGraph, build, edge_tensors
from bench.adapters.kit.base import Adapter
from bench.adapters.kit.effects import prediction
from bench.adapters.kit.params import Params, param
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import CONTROL, perturbed_genes
from bench.core.errors import ModelError
from bench.core.isolated_import import isolated

MODULES = ("gears", "gears.utils")


@dataclass(frozen=True)
class GearsParams(Params):
    """GEARS' parameters and defaults, named as in ``GEARS.model_initialize`` (the network), ``GEARS.train``
    and ``PertData.get_dataloader`` (batch sizes of its tutorials; ``eval_batch_size`` is its
    ``test_batch_size``, used for validation; a batch never exceeds a cell type's training cells, as GEARS
    drops an incomplete last batch); ``perturbation_graph`` and ``gene_universe``: see ``graph``."""

    hidden_size: int = param(64, "[1, inf)")
    epochs: int = param(20, "[1, inf)")
    lr: float = param(1e-3, "(0, inf)")
    weight_decay: float = param(5e-4, "[0, inf)")
    batch_size: int = param(32, "[1, inf)")
    eval_batch_size: int = param(128, "[1, inf)")
    num_go_gnn_layers: int = param(1, "[1, inf)")
    num_gene_gnn_layers: int = param(1, "[1, inf)")
    decoder_hidden_size: int = param(16, "[1, inf)")
    num_similar_genes_go_graph: int = param(20, "[1, inf)")
    num_similar_genes_co_express_graph: int = param(20, "[1, inf)")
    coexpress_threshold: float = param(0.4, "[0, 1)")
    direction_lambda: float = param(0.1, "[0, inf)")
    perturbation_graph: str = param("auto", choices=GRAPHS)
    gene_universe: str = param("genome", choices=UNIVERSES)


class FittedGears(NamedTuple):
    """One trained ``gears.GEARS`` (training data released) and its perturbation graph."""

    gears: object
    graph: PerturbationGraph


class GearsModel(Adapter):
    Params = GearsParams

    def check_queries(self, train: TrainData, queries: dict[str, list[str]]) -> None:
        """Each cell type's graph, as ``fit`` builds it (and then takes from here), must hold every gene of its
        test conditions."""
        self._graphs = {}
        for cell_type, conditions in queries.items():
            if cell_type in set(train.cells.obs["cell_type"].astype(str)):
                self._graphs[cell_type] = self._graph(train, workspace.select(train, cell_type))
                self._graphs[cell_type].check(conditions)

    def fit(self, train: TrainData) -> None:
        self.genes, self.models, epochs = train.genes, {}, self.params.epochs
        cell_types = sorted(train.cells.obs["cell_type"].astype(str).unique())
        for number, cell_type in enumerate(cell_types):
            train.progress("preparing GEARS' data and graph")
            selection = workspace.select(train, cell_type)
            if set(selection.train.obs["condition"]) <= {CONTROL}:
                raise ModelError(f"GEARS has no training perturbation of cell type '{cell_type}' to learn from")
            graph = getattr(self, "_graphs", {}).pop(cell_type, None) or self._graph(train, selection)
            graph.check(selection.val.obs["condition"].unique())
            gears = self._train(selection, graph, train, number * epochs, len(cell_types) * epochs)
            self.models[cell_type] = FittedGears(gears, graph)

    def _graph(self, train: TrainData, selection: workspace.Selection) -> PerturbationGraph:
        return build(self.params.perturbation_graph, train.gene_knowledge,
                     perturbed_genes(selection.train.obs["condition"].unique()), train.genes,
                     self.params.gene_universe, perturbed_genes(selection.val.obs["condition"].unique()))

    def _train(self, selection: workspace.Selection, graph: PerturbationGraph, train: TrainData, first_step: int,
               total_epochs: int):
        adata, split = workspace.gears_data(selection, graph)
        params, top_k = self.params, self.params.num_similar_genes_go_graph
        edges = graph.go_edges(top_k) if graph.kind == "go" else None
        with tempfile.TemporaryDirectory(prefix="bench-gears-") as scratch:
            data_path, gene_set, split_path = workspace.write_inputs(Path(scratch), graph, split)
            with isolated(train.seed, Path(scratch), *MODULES) as (library, utils):
                pert_data = library.PertData(str(data_path), gene_set_path=str(gene_set))
                pert_data.new_data_process(dataset_name=workspace.DATASET, adata=adata)
                pert_data.prepare_split(split="custom", split_dict_path=str(split_path))
                batch_size = min(params.batch_size, selection.train.n_obs)  # GEARS drops a short last batch
                pert_data.get_dataloader(batch_size=batch_size, test_batch_size=params.eval_batch_size)
                del pert_data.dataloader["test_loader"]  # empty; GEARS would evaluate it after training
                pert_data.adata.X = PandasIndexCSR(pert_data.adata.X, dtype="float32")
                gears = library.GEARS(pert_data, device=train.device)
                if edges is None:  # GEARS' co-expression graph of the measured genes
                    edges = utils.get_coexpression_network_from_train(
                        pert_data.adata, params.coexpress_threshold, top_k, pert_data.data_path,
                        pert_data.dataset_name, pert_data.split, pert_data.seed, pert_data.train_gene_set_size,
                        pert_data.set2conditions)
                g_go, g_go_weight = edge_tensors(edges, pert_data.node_map_pert)
                gears.model_initialize(**params.arguments(gears.model_initialize), G_go=g_go, G_go_weight=g_go_weight)
                install_go_rows(gears.model)
                gears.wandb = EpochReporter(train.report, first_step, train.progress, total_epochs)
                gears.train(**params.arguments(gears.train))
        gears.wandb = None
        gears.dataloader, gears.adata, gears.ctrl_adata = {}, None, None  # training data, no longer needed
        return gears

    def predict(self, query: PredictQuery) -> Prediction:
        fitted = self.models.get(query.cell_type)
        if fitted is None:
            raise ModelError(f"GEARS was not trained on cell type '{query.cell_type}' (one model per cell type)")
        if query.genes != self.genes:
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
