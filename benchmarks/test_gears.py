"""GEARS on ``norman_subset`` (simulation split, seed 1): one whole run, and the adapter against cell-gears.

- ``test_gears_run_whole_process``: a fresh process loads the dataset and does one ``runner.run`` of the
  ``gears`` card (``fast`` and ``default`` presets; the default's 20 epochs take a long time on a CPU);
  wall time and peak RSS (``VmHWM``) go to ``benchmark.extra_info``.
- ``test_gears_adapter_overhead``: in one fresh process, the same split and seed trained and predicted
  by calling cell-gears directly with the same prepared inputs (only its own calls timed) and by the
  adapter, three times in turn, on one torch thread; both compute the GO GNN only at the rows a batch
  reads (``install_go_rows``), and all must give the same predictions. ``extra_info`` holds the times, the
  ratios adapter / direct, one direct run of cell-gears' untouched model over every GO row
  (``all_rows_s``; its predictions differ from the others by floating-point summation order, which
  GEARS' training amplifies: ``all_rows_max_abs_diff``), and the time to build the genome-wide GO graph
  into an empty cache and to read it back (memoised per process afterwards, so timed in no path).

Needs the data store (``BENCH_DATA_DIR``) with norman_subset and the gene_ontology files.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

RUN_SCRIPT = """
import json, sys, time
start = time.perf_counter()
from bench.core import registry
from bench.workflows import runner
from bench.data.datasets import load_dataset
from bench.data.knowledge import StoreGeneKnowledge

def peak_mb():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

preset = sys.argv[1]
card = registry.find_card("gears")
prepared = runner.PreparedDataset.of(load_dataset("norman_subset"))
spec = runner.RunSpec(card, registry.resolve_params(card, preset), prepared.name, "simulation", 1, preset)
result = runner.run(spec, prepared, knowledge=StoreGeneKnowledge())
assert result.ok, result.traceback
print(json.dumps({"process_s": time.perf_counter() - start, "run_s": result.wall_time_s, "peak_mb": peak_mb(),
                  "pearson_delta_de20": result.metrics["all/pearson_delta_de20"]}))
"""

OVERHEAD_SCRIPT = """
import json, os, random, sys, tempfile, time
from pathlib import Path
from unittest import mock
import numpy as np, torch
from bench.core import registry
from bench.evaluation import splits
from bench.adapters.gears import workspace
from bench.adapters.gears.compat import PandasIndexCSR, install_go_rows
from bench.adapters.gears.graph import GO_THRESHOLD, build, edge_tensors
from bench.core.api import PredictQuery, TrainData
from bench.core.conditions import perturbed_genes
from bench.core.isolated_import import isolated
from bench.data.datasets import load_dataset
from bench.data.go_similarity import GoSimilarity
from bench.data.knowledge import StoreGeneKnowledge

preset, seed = sys.argv[1], 1
torch.set_num_threads(1)  # one thread: the ratio then suffers least from other processes on the machine
card = registry.find_card("gears")
params = registry.resolve_params(card, preset)
dataset = load_dataset("norman_subset")
split, _ = splits.obtain(dataset.adata, dataset.name, dataset.sha256, "simulation", seed)
data = splits.apply(split, dataset.adata)
train = TrainData(cells=data.train, val=data.val, gene_knowledge=StoreGeneKnowledge(), seed=seed, device="cpu")
conditions = sorted(set(data.test.obs["condition"]))
query = PredictQuery(conditions, data.query_control, "k562", seed=seed)
with isolated(0, Path(tempfile.gettempdir()), "gears"):
    pass  # the import (several seconds) is timed in neither path

def adapter_run():
    start = time.perf_counter()
    model = registry.build(card, params)
    model.fit(train)
    means = model.predict(query).means
    return time.perf_counter() - start, means.to_numpy()

def direct_run(all_rows=False):
    # Inputs prepared as a user of cell-gears would have to (not timed): GEARS' AnnData, gene2go pickle,
    # gene list, custom split and the GO graph tensors; then only cell-gears' own calls are timed.
    from gears import GEARS, PertData
    selection = workspace.select(train, "k562")
    graph = build("auto", train.gene_knowledge, perturbed_genes(selection.train.obs["condition"].unique()), train.genes)
    adata, split_dict = workspace.gears_data(selection, graph)
    edges = graph.go_edges(params["num_similar_genes_go_graph"])
    controls = workspace.control_anndata(data.query_control)
    genes = [graph.nodes_of(c) for c in conditions]
    network = {k: params[k] for k in ("hidden_size", "num_go_gnn_layers", "num_gene_gnn_layers", "decoder_hidden_size",
               "num_similar_genes_go_graph", "num_similar_genes_co_express_graph", "coexpress_threshold",
               "direction_lambda")}
    with tempfile.TemporaryDirectory() as folder:
        data_path, gene_set, split_path = workspace.write_inputs(Path(folder), graph, split_dict)
        torch.manual_seed(seed); np.random.seed(seed); random.seed(seed)
        start = time.perf_counter()
        pert_data = PertData(str(data_path), gene_set_path=str(gene_set))
        pert_data.new_data_process(dataset_name="bench", adata=adata)
        pert_data.prepare_split(split="custom", split_dict_path=str(split_path))
        pert_data.get_dataloader(batch_size=min(params["batch_size"], selection.train.n_obs),
                                 test_batch_size=params["eval_batch_size"])
        del pert_data.dataloader["test_loader"]
        pert_data.adata.X = PandasIndexCSR(pert_data.adata.X, dtype="float32")
        model = GEARS(pert_data, device="cpu")
        g_go, g_weight = edge_tensors(edges, pert_data.node_map_pert)
        model.model_initialize(**network, G_go=g_go, G_go_weight=g_weight)
        if not all_rows:
            install_go_rows(model.model)
        model.train(epochs=params["epochs"], lr=params["lr"], weight_decay=params["weight_decay"])
        model.adata = controls
        np.random.seed(seed)
        predicted = model.predict(genes)
        seconds = time.perf_counter() - start
    return seconds, np.stack([predicted["_".join(g)] for g in genes])

ontology, top_k = train.gene_knowledge.go_annotations().ontology, params["num_similar_genes_go_graph"]
figures = {}
with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {"BENCH_CACHE_DIR": cache}):
    for name in ("go_graph_build_s", "go_graph_cached_s"):  # the genome-wide GO graph built, then read back
        similarity = GoSimilarity(ontology)  # not memoised
        start = time.perf_counter()
        similarity.similarity_graph(ontology.symbols, GO_THRESHOLD, top_k)
        figures[name] = time.perf_counter() - start
build("go", train.gene_knowledge, set(), train.genes).go_edges(top_k)  # memoised for every path below
reference, same = None, True
for round_ in range(1, 4):
    direct, direct_means = direct_run()
    adapter, adapter_means = adapter_run()
    reference = direct_means if reference is None else reference
    same &= bool(np.array_equal(adapter_means, reference) and np.array_equal(direct_means, reference))
    figures.update({f"direct_{round_}_s": direct, f"adapter_{round_}_s": adapter, f"ratio_{round_}": adapter / direct})
figures["median_ratio"] = float(np.median([figures[f"ratio_{r}"] for r in range(1, 4)]))
figures["all_rows_s"], all_rows_means = direct_run(all_rows=True)
figures["all_rows_max_abs_diff"] = float(np.abs(all_rows_means - reference).max())
figures["same_predictions"] = same
print(json.dumps(figures))
"""


def child(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("preset", ["fast", "default"])
def test_gears_run_whole_process(benchmark, preset):
    figures = benchmark.pedantic(child, args=(RUN_SCRIPT, preset), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)


def test_gears_adapter_overhead(benchmark):
    figures = benchmark.pedantic(child, args=(OVERHEAD_SCRIPT, "fast"), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    assert figures["same_predictions"]
