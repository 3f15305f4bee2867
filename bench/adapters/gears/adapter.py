"""GEARS (Roohani, Huang & Leskovec, Nat Biotechnol 2024) trained on the harness's frozen split, offline.

``fit``: for each cell type, the GEARS-format files are written from TrainData into a fresh scratch
folder (``workspace``), the perturbation graph comes from the harness's Gene Ontology (``graph``), and
cell-gears' own ``PertData`` (``new_data_process``, a ``custom`` split, ``get_dataloader``) and ``GEARS``
(``model_initialize``, ``train``) do the rest inside ``isolation.isolated``; the model computes its GO
GNN only at the rows each batch reads (``go_rows``, same values). GEARS keeps its epoch with
the lowest validation MSE on the top 20 DE genes; that value, negated, is reported every epoch.

``predict``: ``GEARS.predict`` from the query's held-out control cells, one condition at a time, its
``_``-joined keys mapped back to canonical conditions.

Cell types: GEARS has no cell-type input and pairs each perturbed training cell with a random control
cell of its whole dataset. On data with several cell types the adapter therefore trains one GEARS per
cell type and answers a query with that cell type's model, starting from that cell type's controls.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.adapters.kit.effects import prediction
from bench.adapters.gears import go_rows, workspace
from bench.adapters.gears.compat import EpochReporter, pandas_indexable
from bench.adapters.gears.graph import GRAPHS, UNIVERSES, PerturbationGraph, build, edge_tensors
from bench.adapters.gears.isolation import isolated
from bench.adapters.gears.naming import predict_key
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.conditions import CONTROL
from bench.core.errors import ModelError


@dataclass
class FittedGears:
    """One trained ``gears.GEARS`` (training data released), its perturbation graph and genes."""

    gears: object
    graph: PerturbationGraph
    genes: list[str]


class GearsModel:
    """GEARS' parameters, named as in ``GEARS.model_initialize``, ``GEARS.train`` and
    ``PertData.get_dataloader`` (``eval_batch_size`` is its ``test_batch_size``, used for validation; a
    batch never exceeds a cell type's training cells, as GEARS drops an incomplete last batch);
    ``perturbation_graph``: ``auto``, ``go`` or ``coexpression``; ``gene_universe``: the GO graph's
    nodes, ``genome`` or ``dataset`` (see ``bench.adapters.gears.graph``)."""

    def __init__(
        self,
        hidden_size: int = 64,
        epochs: int = 20,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_go_gnn_layers: int = 1,
        num_gene_gnn_layers: int = 1,
        decoder_hidden_size: int = 16,
        num_similar_genes_go_graph: int = 20,
        num_similar_genes_co_express_graph: int = 20,
        coexpress_threshold: float = 0.4,
        direction_lambda: float = 0.1,
        perturbation_graph: str = "auto",
        gene_universe: str = "genome",
    ):
        counts = dict(
            hidden_size=hidden_size, epochs=epochs, batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_go_gnn_layers=num_go_gnn_layers, num_gene_gnn_layers=num_gene_gnn_layers,
            decoder_hidden_size=decoder_hidden_size, num_similar_genes_go_graph=num_similar_genes_go_graph,
            num_similar_genes_co_express_graph=num_similar_genes_co_express_graph,
        )
        small = [name for name, value in counts.items() if value < 1]
        if small:
            raise ValueError(f"{small[0]} must be at least 1")
        if lr <= 0 or weight_decay < 0 or direction_lambda < 0 or not 0 <= coexpress_threshold < 1:
            raise ValueError("lr must be > 0, weight_decay and direction_lambda >= 0, coexpress_threshold in [0, 1)")
        if perturbation_graph not in GRAPHS:
            raise ValueError(f"perturbation_graph must be one of {', '.join(GRAPHS)}, not '{perturbation_graph}'")
        if gene_universe not in UNIVERSES:
            raise ValueError(f"gene_universe must be one of {', '.join(UNIVERSES)}, not '{gene_universe}'")
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.perturbation_graph, self.gene_universe = perturbation_graph, gene_universe
        self.network = dict(
            hidden_size=hidden_size, num_go_gnn_layers=num_go_gnn_layers, num_gene_gnn_layers=num_gene_gnn_layers,
            decoder_hidden_size=decoder_hidden_size, num_similar_genes_go_graph=num_similar_genes_go_graph,
            num_similar_genes_co_express_graph=num_similar_genes_co_express_graph,
            coexpress_threshold=coexpress_threshold, direction_lambda=direction_lambda,
        )
        self.models: dict[str, FittedGears] = {}

    def fit(self, train: TrainData) -> None:
        self.models = {}
        cell_types = sorted(train.cells.obs["cell_type"].astype(str).unique())
        for number, cell_type in enumerate(cell_types):
            train.progress("preparing GEARS' data and graph")
            selection = workspace.select(train, cell_type)
            if set(selection.train.obs["condition"]) <= {CONTROL}:
                raise ModelError(f"GEARS has no training perturbation of cell type '{cell_type}' to learn from")
            graph = build(self.perturbation_graph, train.gene_knowledge, selection.seen, train.genes,
                          self.gene_universe, selection.validation_genes)
            graph.check(selection.val.obs["condition"].unique())
            gears = self._train(selection, graph, train, first_step=number * self.epochs,
                                total_epochs=len(cell_types) * self.epochs)
            self.models[cell_type] = FittedGears(gears, graph, train.genes)

    def _train(self, selection: workspace.Selection, graph: PerturbationGraph, train: TrainData, first_step: int,
               total_epochs: int):
        adata, split = workspace.gears_data(selection, graph)
        go_edges = graph.go_edges(self.network["num_similar_genes_go_graph"]) if graph.kind == "go" else None
        with tempfile.TemporaryDirectory(prefix="bench-gears-") as scratch:
            inputs = workspace.write_inputs(Path(scratch), graph, split)
            with isolated(train.seed, Path(scratch)) as api:
                pert_data = api.PertData(str(inputs.data_path), gene_set_path=str(inputs.gene_set))
                pert_data.new_data_process(dataset_name=workspace.DATASET, adata=adata)
                pert_data.prepare_split(split="custom", split_dict_path=str(inputs.split))
                batch_size = min(self.batch_size, selection.train.n_obs)  # GEARS drops an incomplete last batch
                pert_data.get_dataloader(batch_size=batch_size, test_batch_size=self.eval_batch_size)
                del pert_data.dataloader["test_loader"]  # empty; GEARS would evaluate it after training
                pert_data.adata.X = pandas_indexable(pert_data.adata.X)
                gears = api.GEARS(pert_data, device=train.device)
                edges = go_edges if go_edges is not None else self._coexpression_edges(api, pert_data)
                g_go, g_go_weight = edge_tensors(edges, pert_data.node_map_pert)
                gears.model_initialize(**self.network, G_go=g_go, G_go_weight=g_go_weight)
                go_rows.install(gears.model)
                gears.wandb = EpochReporter(train.report, first_step, train.progress, total_epochs)
                gears.train(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay)
        gears.wandb = None
        gears.dataloader, gears.adata, gears.ctrl_adata = {}, None, None  # training data, no longer needed
        return gears

    def _coexpression_edges(self, api, pert_data):
        """GEARS' co-expression graph of the measured genes (``network_type='co-express'``)."""
        return api.get_similarity_network(
            network_type="co-express",
            adata=pert_data.adata,
            threshold=self.network["coexpress_threshold"],
            k=self.network["num_similar_genes_go_graph"],
            data_path=pert_data.data_path,
            data_name=pert_data.dataset_name,
            split=pert_data.split,
            seed=pert_data.seed,
            train_gene_set_size=pert_data.train_gene_set_size,
            set2conditions=pert_data.set2conditions,
        )

    def predict(self, query: PredictQuery) -> Prediction:
        fitted = self.models.get(query.cell_type)
        if fitted is None:
            raise ModelError(f"GEARS was not trained on cell type '{query.cell_type}' (one model per cell type)")
        if query.genes != fitted.genes:
            raise ModelError("GEARS was trained on other genes than the query's")
        fitted.graph.check(query.conditions)
        gears = fitted.gears
        means = {}
        with tempfile.TemporaryDirectory(prefix="bench-gears-") as scratch, isolated(query.seed, Path(scratch)):
            gears.adata = workspace.control_anndata(query.control)
            for condition in query.conditions:
                nodes = fitted.graph.nodes_of(condition)
                gears.saved_pred = {}  # GEARS caches predictions by key, whatever cells they started from
                means[condition] = gears.predict([nodes])[predict_key(nodes)]
            gears.adata = gears.ctrl_adata = None
        return prediction(query, means)
