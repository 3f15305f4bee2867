"""The GEARS adapter: cell-gears on our split, offline, with its process-wide side effects contained."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import HANG_S, real_data_file

from bench.adapters.gears import GearsModel, workspace
from bench.adapters.gears.compat import EpochReporter, PandasIndexCSR, install_go_rows
from bench.adapters.gears.graph import build
from bench.adapters.gears.workspace import gears_condition, predict_key
from bench.core import isolated_import, registry
from bench.core.api import PredictQuery, TrainData
from bench.core.conditions import CONTROL, genes_of, perturbed_genes
from bench.core.errors import DataError, ModelError
from bench.core.isolated_import import isolated
from bench.data.gene_ontology import GeneOntology
from bench.evaluation import splits

CARD = registry.find_card("gears")
FAST = registry.resolve_params(CARD, "fast")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_ontology(adata: ad.AnnData, unannotated: set[str]) -> GeneOntology:
    """GO terms for simulated genes: one term per planted gene module plus one of the gene's own (genes
    of a module get Jaccard 1/3); synonyms ``OLD<gene>``; ``unannotated`` genes get no term."""
    genes = list(adata.var_names)
    modules = adata.uns["simulation"]["gene_module"]
    rows = [(i, term) for i, (gene, module) in enumerate(zip(genes, modules), start=1) if gene not in unannotated
            for term in (f"GO:{100 + int(module):07d}", f"GO:{9000 + i:07d}")]
    info = pd.DataFrame({"GeneID": range(1, len(genes) + 1), "Symbol": genes, "Synonyms": [[f"OLD{g}"] for g in genes]})
    return GeneOntology(pd.DataFrame(rows, columns=["GeneID", "GO_ID"]), info)


def hand_ontology() -> GeneOntology:
    """Seven genes: MEAS1, MEAS2 and OTHER have GO terms 1 and 2 (Jaccard 1 between them), TRAIN1 terms 1
    and 3 (Jaccard 1/3 with each of them), VAL1 term 4 alone; BARE and TRAINBARE none. Synonyms OLD<gene>."""
    symbols = ["MEAS1", "MEAS2", "OTHER", "TRAIN1", "VAL1", "BARE", "TRAINBARE"]
    terms = {"MEAS1": [1, 2], "MEAS2": [1, 2], "OTHER": [1, 2], "TRAIN1": [1, 3], "VAL1": [4]}
    rows = [(symbols.index(gene) + 1, f"GO:{term:07d}") for gene, numbers in terms.items() for term in numbers]
    info = pd.DataFrame({"GeneID": range(1, 8), "Symbol": symbols, "Synonyms": [[f"OLD{s}"] for s in symbols]})
    return GeneOntology(pd.DataFrame(rows, columns=["GeneID", "GO_ID"]), info)


def hand_graph(universe: str):
    """The hand ontology's graph for data measuring MEAS1, MEAS2 (as OLDMEAS2) and BARE, perturbing TRAIN1
    and TRAINBARE in training and VAL1 in validation."""
    return build("auto", hand_ontology(), {"TRAIN1", "TRAINBARE"}, ["MEAS1", "OLDMEAS2", "BARE"], universe, {"VAL1"})


def fit_gears(data, knowledge, seed=3, report=None, **params) -> object:
    model = registry.build(CARD, {**FAST, **params})
    model.fit(TrainData(cells=data.train, val=data.val, gene_knowledge=knowledge, seed=seed,
                        report=report or (lambda step, value: None)))
    return model


@pytest.fixture(scope="module")
def split_data(small_synthetic):
    split = splits.make(small_synthetic, "simulation", 1, "synthetic", "sha")
    return split, splits.apply(split, small_synthetic)


@pytest.fixture(scope="module")
def fitted(small_synthetic, split_data):
    """GEARS (fast) on the small simulator with a tiny GO: one training gene and one never-perturbed
    measured gene have no GO annotation."""
    split, data = split_data
    isolated_gene = sorted(perturbed_genes(split.train))[0]
    idle_gene = sorted(set(small_synthetic.var_names) - perturbed_genes(small_synthetic.obs["condition"].unique()))[0]
    ontology = tiny_ontology(small_synthetic, {isolated_gene, idle_gene})
    reports = []
    model = fit_gears(data, ontology, report=lambda step, value: reports.append((step, value)))
    return SimpleNamespace(model=model, ontology=ontology, reports=reports, isolated=isolated_gene, idle=idle_gene,
                           split=split, data=data, fitted=model.models["type_0"])


def test_condition_names_and_predict_keys():
    assert gears_condition([]) == CONTROL
    assert gears_condition(["A"]) == "A+ctrl" and gears_condition(["A"], reverse=True) == "ctrl+A"
    assert gears_condition(["A", "B"]) == "A+B" and gears_condition(["A", "B"], reverse=True) == "B+A"
    assert predict_key(["A"]) == "A" and predict_key(["A", "B"]) == "A_B"


def test_predictions_are_gears_own_under_canonical_names(fitted, tmp_path):
    """A double and a single, predicted by the adapter and by ``GEARS.predict`` directly (``_`` keys)."""
    double = next(c for c in fitted.split.test if len(genes_of(c)) == 2)
    single = next(c for c in fitted.split.test if len(genes_of(c)) == 1)
    control = fitted.data.query_control
    ours = fitted.model.predict(PredictQuery([double, single], control, "type_0", seed=5)).means
    gears = fitted.fitted.gears
    with isolated(5, tmp_path, "gears"):
        gears.adata, gears.saved_pred = workspace.control_anndata(control), {}
        direct = gears.predict([list(genes_of(double)), list(genes_of(single))])
    assert set(direct) == {double.replace("+", "_"), single}
    np.testing.assert_array_equal(ours.loc[double].to_numpy(), direct[double.replace("+", "_")])
    np.testing.assert_array_equal(ours.loc[single].to_numpy(), direct[single])


def test_predictions_start_from_the_query_controls_not_a_cache(fitted):
    """GEARS adds its predicted change to control cells and caches predictions by key; a query with
    control cells shifted by 1 must give predictions shifted by 1."""
    condition = sorted(fitted.split.test)[0]
    control = fitted.data.query_control
    shifted = control.copy()
    shifted.X = sp.csr_matrix(shifted.X.toarray() + 1.0)
    first = fitted.model.predict(PredictQuery([condition], control, "type_0", seed=2)).means
    second = fitted.model.predict(PredictQuery([condition], shifted, "type_0", seed=2)).means
    np.testing.assert_allclose(second.to_numpy() - first.to_numpy(), 1.0, atol=1e-5)


def test_reports_gears_validation_value_every_epoch(fitted):
    assert [step for step, _ in fitted.reports] == list(range(1, FAST["epochs"] + 1))
    assert all(np.isfinite(value) and value <= 0 for _, value in fitted.reports)
    seen = []
    reporter = EpochReporter(lambda step, value: seen.append((step, value)), first_step=4)
    reporter.log({"training_loss": 3.0})
    reporter.log({"train_mse": 1.0, "val_mse": 2.0, "train_de_mse": 3.0, "val_de_mse": 0.25})
    reporter.log({"train_pearson": 0.1, "val_pearson": 0.2, "train_de_pearson": 0.3, "val_de_pearson": 0.4})
    assert seen == [(5, -0.25)]


def test_unannotated_training_gene_is_an_isolated_node_never_index_minus_one(fitted, tmp_path):
    with isolated(0, tmp_path, "gears") as (library,):
        get_pert_idx = library.PertData.get_pert_idx
    graph, gears = fitted.fitted.graph, fitted.fitted.gears
    assert graph.kind == "go" and graph.isolated == [fitted.isolated]
    assert gears.pert_list == graph.nodes and fitted.isolated in gears.pert_list
    node = gears.pert_list.index(fitted.isolated)
    sources, targets = gears.config["G_go"].numpy()
    assert set(sources[targets == node]) == {node}  # its self loop only
    selection = workspace.select(TrainData(cells=fitted.data.train, val=fitted.data.val), "type_0")
    _, split = workspace.gears_data(selection, graph)
    names = SimpleNamespace(pert_names=np.array(gears.pert_list))
    for condition in split["train"] + split["val"]:  # GEARS' own lookup; None would become index -1
        expected = [gears.pert_list.index(g) for g in condition.split("+") if g != CONTROL]
        assert get_pert_idx(names, condition) == expected


def test_unannotated_unseen_gene_is_a_clear_error(fitted):
    query = PredictQuery([fitted.idle, sorted(fitted.split.test)[0]], fitted.data.query_control, "type_0")
    with pytest.raises(ModelError, match=f"cannot represent gene\\(s\\) {fitted.idle} .*no Gene Ontology annotation"):
        fitted.model.predict(query)


def test_unannotated_validation_gene_fails_before_training(small_synthetic):
    for seed in range(1, 21):  # the first split seed that validates on a gene no training condition perturbs
        split = splits.make(small_synthetic, "simulation", seed, "synthetic", "sha")
        genes = sorted(perturbed_genes(split.val) - perturbed_genes(split.train))
        if genes:
            break
    assert genes, "no simulation seed of the small simulator validates on a gene unseen in training"
    val_only, data = genes[0], splits.apply(split, small_synthetic)
    ontology = tiny_ontology(small_synthetic, {val_only})
    with pytest.raises(ModelError, match=f"cannot represent gene\\(s\\) {val_only} ") as error:
        fit_gears(data, ontology)
    assert "\n" not in str(error.value)


def test_a_cell_type_without_training_perturbations_is_a_clear_error(split_data):
    _, data = split_data
    controls = data.train[(data.train.obs["condition"] == CONTROL).to_numpy()]
    with pytest.raises(ModelError, match="no training perturbation of cell type 'type_0'"):
        registry.build(CARD, FAST).fit(TrainData(cells=controls, val=data.val))


def test_go_graph_maps_outdated_symbols_and_falls_back_to_coexpression(small_synthetic, capsys):
    ontology = tiny_ontology(small_synthetic, set())
    genes = list(small_synthetic.var_names)
    go = build("auto", ontology, {genes[0]}, genes)
    assert go.kind == "go" and go.node_of(f"OLD{genes[1]}") == genes[1] and go.node_of("NOPE") is None
    coexpression = build("auto", ontology, {"NOT_A_GENE"}, genes)
    assert coexpression.kind == "coexpression" and "co-expression" in capsys.readouterr().err
    assert coexpression.node_of(genes[5]) == genes[5] and coexpression.isolated == ["NOT_A_GENE"]
    assert build("go", ontology, {"NOT_A_GENE"}, genes).kind == "go"
    assert build("auto", None, {genes[0]}, genes).kind == "coexpression"
    with pytest.raises(DataError, match="perturbation_graph 'go' needs the Gene Ontology"):
        build("go", None, {genes[0]}, genes)


def test_gene_universes(capsys):
    """``genome``: every annotated gene; ``dataset``: cell-gears' default_pert_graph=False rule on what the
    model is shown (annotated measured genes and genes perturbed in training or validation). In both, an
    unannotated training gene is an isolated node and an unannotated measured gene is no node."""
    genome, dataset = hand_graph("genome"), hand_graph("dataset")
    assert genome.nodes == ["MEAS1", "MEAS2", "OTHER", "TRAIN1", "TRAINBARE", "VAL1"]
    assert dataset.nodes == ["MEAS1", "MEAS2", "TRAIN1", "TRAINBARE", "VAL1"]
    assert genome.isolated == dataset.isolated == ["TRAINBARE"] and "TRAINBARE" in capsys.readouterr().err
    assert genome.node_of("OLDMEAS2") == dataset.node_of("OLDMEAS2") == "MEAS2"
    genome.check(["OTHER", "MEAS2+TRAIN1", "VAL1"])
    with pytest.raises(ModelError, match="cannot represent gene\\(s\\) OTHER .*gene_universe 'dataset'") as error:
        dataset.check(["MEAS2+TRAIN1", "OTHER+MEAS1"])
    assert "\n" not in str(error.value)
    for built in (genome, dataset):
        with pytest.raises(ModelError, match="cannot represent gene\\(s\\) BARE "):
            built.check(["BARE"])


def edge_set(edges: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(edges["source"], edges["target"]))


def test_go_edges_of_each_universe():
    shared = {("MEAS1", "MEAS2"), ("MEAS1", "TRAIN1"), ("MEAS2", "TRAIN1")}
    other = {("OTHER", "MEAS1"), ("OTHER", "MEAS2"), ("OTHER", "TRAIN1")}
    for universe, pairs in (("dataset", shared), ("genome", shared | other)):
        built = hand_graph(universe)
        edges = built.go_edges(20)
        loops = edges[edges["source"] == edges["target"]]
        assert sorted(loops["source"]) == built.nodes and set(loops["importance"]) == {1.0}
        assert edge_set(edges[edges["source"] != edges["target"]]) == pairs | {(b, a) for a, b in pairs}
    weights = dict(zip(zip(edges["source"], edges["target"]), edges["importance"]))
    assert weights["MEAS1", "MEAS2"] == 1.0 and weights["TRAIN1", "OTHER"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("values, message", [
    ({"gene_universe": "all"}, "gene_universe must be one of genome, dataset, got 'all'"),
    ({"perturbation_graph": "string"}, "perturbation_graph must be one of auto, go, coexpression, got 'string'"),
    ({"epochs": 0}, "epochs must be in [1, inf), got 0"),
    ({"coexpress_threshold": 1.0}, "coexpress_threshold must be in [0, 1), got 1.0"),
])
def test_parameters_are_checked(values, message):
    with pytest.raises(ValueError) as error:
        GearsModel(**values)
    assert str(error.value) == message
    assert registry.resolve_params(CARD)["gene_universe"] == "genome"


def test_go_rows_give_gears_own_values(fitted, tmp_path):
    """GEARS' model with and without ``install_go_rows`` (two GO layers, so the rows of the first layer are
    the sources of the second's), trained side by side with GEARS' optimiser: the same outputs and
    gradients at every step, under the same parameter names (the embedding table starts far above GEARS'
    max_norm of 1, so a missed renormalisation would show at once). Only summation order differs."""
    import torch

    with isolated(0, tmp_path, "gears"):
        from gears.model import GEARS_Model
        from torch_geometric.data import Batch, Data
    config = {**fitted.fitted.gears.config, "num_go_gnn_layers": 2}
    torch.manual_seed(0)
    reference = GEARS_Model(config)
    ours = copy.deepcopy(reference)
    install_go_rows(ours)
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in reference.named_parameters()]
    ours = copy.deepcopy(ours)  # as GEARS keeps its best model
    optimisers = [torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=5e-4) for m in (reference, ours)]
    generator = torch.Generator().manual_seed(1)
    n_genes, n_perts = config["num_genes"], config["num_perts"]
    for step in range(4):
        perts = torch.randint(0, n_perts, (6, 2), generator=generator).tolist()
        cells = [[-1], perts[0][:1], perts[1], perts[2][:1], perts[3], perts[4][:1]]
        batch = Batch.from_data_list([Data(x=torch.rand(n_genes, 1, generator=generator), pert_idx=p) for p in cells])
        target = torch.rand(len(cells), n_genes, generator=generator)
        outputs = []
        for model in (reference, ours):
            output = model(batch)
            ((output - target) ** 2).mean().backward()
            outputs.append(output.detach())
        torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
        for (name, theirs), mine in zip(reference.named_parameters(), ours.parameters()):
            assert (mine.grad is None) == (theirs.grad is None), name  # GEARS never uses pert_w
            if theirs.grad is not None:
                torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-6, msg=name)
        for optimiser in optimisers:
            optimiser.step()
            optimiser.zero_grad()


def test_gears_sees_training_and_validation_cells_only(fitted):
    data = fitted.data
    selection = workspace.select(TrainData(cells=data.train, val=data.val), "type_0")
    adata, split = workspace.gears_data(selection, fitted.fitted.graph)
    assert set(adata.obs_names) <= set(data.train.obs_names) | set(data.val.obs_names)
    assert not set(adata.obs_names) & (set(data.test.obs_names) | set(data.query_control.obs_names))
    assert split["test"] == [] and not set(split["train"]) & set(split["val"])
    assert set(adata.obs["condition"]) == set(split["train"]) | set(split["val"])
    assert list(adata.var["gene_name"]) == list(data.train.var_names)


def test_sparse_rows_indexed_by_a_pandas_series():
    X = sp.csr_matrix(np.arange(12, dtype=np.float32).reshape(4, 3))
    mask = pd.Series([True, False, True, False])
    with pytest.raises(AttributeError, match="nonzero"):
        X[mask]  # what GEARS.__init__ does, on this scipy
    fixed = PandasIndexCSR(X)
    np.testing.assert_array_equal(np.mean(fixed[mask], axis=0), np.mean(X[mask.to_numpy()], axis=0))
    np.testing.assert_array_equal(fixed[pd.Index([1, 3]), :].toarray(), X[[1, 3], :].toarray())


def test_same_seed_same_predictions(fitted):
    again = fit_gears(fitted.data, fitted.ontology)
    query = PredictQuery(sorted(fitted.split.test), fitted.data.query_control, "type_0", seed=4)
    np.testing.assert_array_equal(fitted.model.predict(query).means.to_numpy(), again.predict(query).means.to_numpy())


def test_one_model_per_cell_type():
    from bench.data.simulator import simulate

    adata = simulate(n_cells=600, n_genes=50, n_modules=4, n_singles=6, n_doubles=4, n_cell_types=2, seed=3)
    data = splits.apply(splits.make(adata, "simulation", 1, "two_types", "sha"), adata)
    model = fit_gears(data, None, perturbation_graph="coexpression")
    assert sorted(model.models) == ["type_0", "type_1"]
    conditions = sorted(set(data.test.obs["condition"]))
    controls = {t: data.query_control[data.query_control.obs["cell_type"] == t] for t in model.models}
    means = {t: model.predict(PredictQuery(conditions, controls[t], t, seed=1)).means for t in model.models}
    assert not np.allclose(means["type_0"].to_numpy(), means["type_1"].to_numpy())
    with pytest.raises(ModelError, match="not trained on cell type 'type_9'"):
        model.predict(PredictQuery(conditions, controls["type_0"], "type_9"))


ISOLATION_SCRIPT = r"""
import json, multiprocessing, os, random, socket, sys, tempfile, warnings
import numpy as np, scanpy as sc, torch
from threadpoolctl import threadpool_info
from bench.core import registry
from bench.evaluation import splits
from bench.core.api import PredictQuery, TrainData
from bench.data.simulator import simulate

work = sys.argv[1]
os.makedirs(f"{work}/cwd"); os.makedirs(f"{work}/tmp")
os.chdir(f"{work}/cwd")
tempfile.tempdir = f"{work}/tmp"

def forbidden(*args, **kwargs):
    raise RuntimeError("GEARS tried to use the network or a process pool")

socket.socket.connect = forbidden
multiprocessing.Pool = forbidden  # cell-gears binds it at import (gears.utils: make_GO's pool of 25)
adata = simulate(n_cells=500, n_genes=40, n_modules=4, n_singles=6, n_doubles=4, seed=5)
data = splits.apply(splits.make(adata, "simulation", 1, "tiny", "sha"), adata)
card = registry.find_card("gears")
model = registry.build(card, {**registry.resolve_params(card, "fast"), "perturbation_graph": "coexpression"})
torch.manual_seed(1234); np.random.seed(99); random.seed(7); torch.set_num_threads(1)
warnings.simplefilter("default"); warnings.filterwarnings("error", message="bench-probe")
sc.settings.verbosity = 2
pools = [p["filepath"] for p in threadpool_info()]

def state():
    threads = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    return dict(torch=torch.get_rng_state().tolist(), numpy=np.random.get_state()[1].tolist(),
                random=random.getstate()[1], filters=repr(warnings.filters), show=repr(warnings.showwarning),
                cwd=os.getcwd(), env=dict(os.environ), torch_threads=torch.get_num_threads(),
                pools=[threads.get(p) for p in pools], verbosity=int(sc.settings.verbosity),
                out=repr((sys.stdout, sys.stderr)))

before = state()
assert "gears" not in sys.modules
model.fit(TrainData(cells=data.train, val=data.val, seed=1))
model.predict(PredictQuery(sorted(set(data.test.obs["condition"])), data.query_control, "type_0", seed=1))
after = state()
print(json.dumps({"changed": sorted(k for k in before if before[k] != after[k]), "imported": "gears" in sys.modules,
                  "cwd_files": os.listdir(f"{work}/cwd"),
                  "scratch_left": [f for f in os.listdir(f"{work}/tmp") if f.startswith("bench-gears")],
                  "children": len(multiprocessing.active_children())}))
"""


@pytest.mark.slow
def test_fit_and_predict_leave_the_process_as_they_found_it(tmp_path):
    """In a fresh interpreter, so that GEARS is first imported inside the fit: generator states,
    warnings filters, working directory, environment, torch and native thread counts, scanpy verbosity
    and stdout/stderr unchanged; nothing written outside the scratch folder, which is removed; no network, no pool."""
    out = subprocess.run([sys.executable, "-c", ISOLATION_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=HANG_S, env={**os.environ, "PYTHONWARNINGS": "", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"changed": [], "imported": True, "cwd_files": [], "scratch_left": [], "children": 0}


def bench_cli(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=HANG_S)


@pytest.mark.slow
def test_cli_runs_gears_on_the_simulator(tmp_path):
    out = bench_cli("run", "--model", "gears", "--preset", "fast", "--dataset", "synthetic", "--split", "unseen_single",
                    "--no-track", cwd=tmp_path, env={"COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "unseen_single" in out.stdout and "co-expression graph" in out.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_cli_runs_gears_on_norman_subset_and_scores_like_gears(tmp_path, norman_subset):
    """``bench run --model gears`` end to end (GO graph, real tracking), then the tracked per-perturbation
    metrics of GEARS' predictions against GEARS' own ``compute_metrics`` on the same test conditions."""
    real_data_file("gene2go_human.gz")
    import mlflow

    from bench.evaluation.de import de_genes

    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    out = bench_cli("run", "--model", "gears", "--preset", "fast", "--split", "simulation", "--dataset",
                    "norman_subset", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "unseen_single" in out.stdout and "IER5L" in out.stderr  # the seen gene without GO terms
    assert not list(tmp_path.glob("**/go_essential*")) and not (tmp_path / "data").exists()
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs([mlflow.get_experiment_by_name("bench/norman_subset").experiment_id])
    runs = runs[runs["tags.model"] != "ceiling"]  # the data ceiling `bench run` adds
    assert list(runs["status"]) == ["FINISHED"] and list(runs["tags.model"]) == ["gears"]
    folder = mlflow.artifacts.download_artifacts(run_id=runs["run_id"].iloc[0], dst_path=str(tmp_path / "artifacts"))
    table = pd.read_csv(f"{folder}/per_perturbation.csv")
    predicted = ad.read_h5ad(f"{folder}/predictions.h5ad")

    with isolated(0, tmp_path, "gears"):
        from gears.inference import compute_metrics
    adata = norman_subset.adata
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    genes = list(adata.var_names)
    de20 = de_genes(adata)["k562"]
    results = {key: [] for key in ("pert_cat", "pred", "truth", "pred_de", "truth_de")}
    for condition in table["condition"]:
        cells = X[(adata.obs["condition"] == condition).to_numpy()]
        mean = predicted.X[(predicted.obs["condition"] == condition).to_numpy()][0]
        de = [genes.index(g) for g in de20[condition]]
        for cell in cells:  # GEARS scores per-cell arrays, averaged per perturbation
            results["pert_cat"].append(condition)
            results["pred"].append(mean)
            results["truth"].append(cell)
            results["pred_de"].append(mean[de])
            results["truth_de"].append(cell[de])
    _, theirs = compute_metrics({key: np.array(value) for key, value in results.items()})
    assert len(table) == len(theirs) >= 5
    for row in table.itertuples():
        assert row.mse == pytest.approx(theirs[row.condition]["mse"], abs=1e-6)
        assert row.mse_de20 == pytest.approx(theirs[row.condition]["mse_de"], abs=1e-6)
        assert row.pearson == pytest.approx(theirs[row.condition]["pearson"], abs=1e-6)


IMPORT_SCRIPT = """
import torch, scanpy  # the heavy imports first, so that importing GEARS itself takes seconds
from bench.core.isolated_import import locked_import
print("ready", flush=True)
locked_import("gears")
print("imported", flush=True)
"""


@pytest.mark.slow
def test_importing_gears_waits_while_another_process_imports_it():
    """Importing GEARS compiles dcor's numba functions into numba's on-disk cache, shared by every process
    of the environment. Two processes compiling them at once can load each other's half-written entries
    and abort (numba/numba#10128), as pytest workers did in fresh-install CI runs. The import therefore
    holds an inter-process lock: a process importing GEARS while another holds it waits."""
    from filelock import FileLock

    child = subprocess.Popen([sys.executable, "-c", IMPORT_SCRIPT], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        with FileLock(isolated_import.import_lock_path()):
            assert child.stdout.readline().strip() == "ready"
            with pytest.raises(subprocess.TimeoutExpired):
                child.wait(timeout=30)
        assert child.wait(timeout=300) == 0
        assert child.stdout.read().split() == ["imported"]
    finally:
        child.kill()


def test_an_unrepresentable_test_gene_fails_the_run_before_training(small_synthetic, tmp_path):
    from bench.data.datasets import load_dataset
    from bench.workflows import runner

    path = tmp_path / "gears_screen.h5ad"  # its own name: frozen splits are cached by dataset name
    small_synthetic.write_h5ad(path)
    prepared = runner.PreparedDataset.of(load_dataset(path, counts=False))
    split, _ = splits.obtain(prepared.adata, prepared.name, prepared.sha256, "simulation", 1)
    unseen = sorted(perturbed_genes(split.test) - perturbed_genes(split.train) - perturbed_genes(split.val))
    assert unseen, "the small simulator's seed 1 tests no gene unseen in training"
    heard = []
    result = runner.run(runner.RunSpec(CARD, FAST, prepared.name, "simulation", 1), prepared,
                        knowledge=tiny_ontology(small_synthetic, {unseen[0]}),
                        progress=lambda phase, done=0, total=None: heard.append(phase))
    assert result.status == "FAILED" and f"GEARS cannot represent gene(s) {unseen[0]} " in result.error
    assert "fitting" not in heard and "fit" not in result.phase_seconds  # refused before training
