"""scBIG end to end: clustering recovers planted modules, the adapter learns, is deterministic, reports
its validation value and diagnostics, reads the official resources. Its parts have their own tests:
``test_scbig_grc.py``, ``test_scbig_gcae.py``, ``test_scbig_flow.py``, ``test_scbig_structure.py``,
``test_scbig_resources.py``."""

from __future__ import annotations

import gzip
import pickle
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import held_out_error
from sklearn.metrics import adjusted_rand_score

from bench.adapters.baselines import ControlModel
from bench.adapters.scbig import ScBIGModel, clustering, priors
from bench.adapters.scbig.encoder import PCALatent
from bench.adapters.scbig.priors import data_gene_embeddings
from bench.core import registry
from bench.core.api import PredictQuery, TrainData
from bench.core.conditions import CONTROL
from bench.core.errors import BenchError, ModelError

CARDS = ("scbig", "scbig_pca_latent", "scbig_random_clusters", "scbig_no_structure_loss")


def fast_model(name: str = "scbig", **overrides) -> ScBIGModel:
    card = registry.find_card(name)
    return registry.build(card, {**registry.resolve_params(card, "fast"), **overrides})


def planted(adata) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's module of every gene and the mask of genes that belong to a module."""
    module = np.asarray(adata.uns["simulation"]["gene_module"])
    return module, module >= 0


def held_out_validation(small_synthetic):
    condition = small_synthetic.obs["condition"].astype(str)
    val_conditions = sorted(set(condition) - {CONTROL})[:3]
    return (small_synthetic[~condition.isin(val_conditions)].copy(),
            small_synthetic[condition.isin(val_conditions)].copy())


def test_gene_relation_clustering_recovers_planted_programs(small_synthetic):
    module, in_module = planted(small_synthetic)
    k = int(module.max()) + 1
    train = TrainData(cells=small_synthetic, val=small_synthetic[:0])
    embeddings = data_gene_embeddings(train, np.random.default_rng(0))
    no_graph = sp.csr_matrix((small_synthetic.n_vars, small_synthetic.n_vars))
    labels = clustering.gene_relation_clusters(embeddings, no_graph, k)
    random = clustering.random_clusters(small_synthetic.n_vars, k, seed=0)
    grc_ari = adjusted_rand_score(module[in_module], labels[in_module])
    random_ari = adjusted_rand_score(module[in_module], random[in_module])
    assert grc_ari > 0.6 and grc_ari - random_ari > 0.5, (grc_ari, random_ari)
    assert sorted(np.bincount(labels)) == sorted(clustering.capacities(small_synthetic.n_vars, k))


@pytest.mark.slow
def test_flow_matching_learns_held_out_seen_doubles(held_out_doubles):
    """The flow (in the PCA latent, whose ceiling is near perfect here) learns held-out doubles of seen
    genes; one call learns nothing. With the condition dropout of 0.9 a few hundred calls are too few."""
    assert len(held_out_doubles[3]) >= 3
    control = held_out_error(ControlModel(), held_out_doubles)
    trained = fast_model("scbig_pca_latent", calls=600, condition_dropout=0.5)
    assert held_out_error(trained, held_out_doubles) < 0.8 * control
    assert held_out_error(fast_model("scbig_pca_latent", calls=1), held_out_doubles) > 0.8 * control


def test_fit_is_deterministic_per_seed_and_restores_the_callers_state(held_out_doubles):
    train, val, query, held, _ = held_out_doubles
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    runs = []
    for seed in (1, 1, 2):
        model = fast_model(calls=40, ae_epochs=3)
        model.fit(TrainData(cells=train, val=val, seed=seed))
        runs.append(model.predict(PredictQuery(held, query, "type_0", seed=seed)).means.to_numpy())
    assert np.array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.get_num_threads() == threads


def test_ablation_cards_change_only_their_part(small_synthetic):
    params = {name: registry.resolve_params(registry.find_card(name), "fast") for name in CARDS}
    differing = {name: {k for k in params[name] if params[name][k] != params["scbig"][k]} for name in CARDS}
    assert differing == {"scbig": set(), "scbig_pca_latent": {"latent"}, "scbig_random_clusters": {"clusters"},
                         "scbig_no_structure_loss": {"correlation_weight", "pathway_weight"}}
    train = TrainData(cells=small_synthetic, val=small_synthetic[:0], seed=1)
    pca = fast_model("scbig_pca_latent", calls=2)
    pca.fit(train)
    assert isinstance(pca.latent.autoencoder, PCALatent)


def test_reports_the_official_validation_value_and_records_diagnostics(small_synthetic):
    """Every eval_every calls the mean all-gene Pearson delta of the validation conditions is reported;
    the run records the latent ceiling of its latent and of PCA-50, and the skipped alignment steps."""
    train, val = held_out_validation(small_synthetic)
    reported = []
    data = TrainData(cells=train, val=val, seed=1, report=lambda step, value: reported.append((step, value)))
    fast_model(calls=60, eval_every=20, ae_epochs=2, structure_every=30).fit(data)
    assert [step for step, _ in reported] == [20, 40, 60]
    assert all(-1 <= value <= 1 for _, value in reported)
    names = {f"{latent}_ceiling_pearson_delta{de}" for latent in ("latent", "pca50") for de in ("", "_de20")}
    assert names | {"structure_steps_skipped"} == set(data.diagnostics)
    assert data.diagnostics["pca50_ceiling_pearson_delta"] > 0.9  # PCA-50 of 120 genes nearly reconstructs
    assert all(-1 <= data.diagnostics[name] <= 1 for name in names)


def test_a_pca_latent_has_the_pca_ceiling(small_synthetic):
    train, val = held_out_validation(small_synthetic)
    data = TrainData(cells=train, val=val, seed=1)
    fast_model("scbig_pca_latent", calls=2, latent_dim=50).fit(data)
    assert data.diagnostics["latent_ceiling_pearson_delta"] == pytest.approx(data.diagnostics["pca50_ceiling_pearson_delta"],
                                                                            abs=1e-6)


@pytest.mark.parametrize("params, message", [
    ({"clusters": "kmeans"}, "clusters must be one of grc, random, got 'kmeans'"),
    ({"latent": "vae"}, "latent must be one of gcae, pca"),
    ({"width": 30, "heads": 4}, "width must be a multiple of heads"),
    ({"seed_dim": 30}, "seed_dim must be a multiple of seed_heads"),
    ({"time_width": 33}, "time_width must be even"),
    ({"calls": 0}, r"calls must be in \[1, inf\), got 0"),
    ({"gmt_min_genes": 0}, r"gmt_min_genes must be in \[1, inf\)"),
    ({"gmt_max_pathways": -1}, r"gmt_max_pathways must be in \[0, inf\)"),
    ({"ae_epochs": -1}, r"ae_epochs must be in \[0, inf\)"),
    ({"structure_every": 0}, r"structure_every must be in \[1, inf\)"),
    ({"ae_dropout": 1.0}, r"ae_dropout must be in \[0, 1\), got 1.0"),
    ({"condition_dropout": 1.0}, r"condition_dropout must be in \[0, 1\)"),
    ({"rtol": 0.0}, r"rtol must be in \(0, inf\), got 0.0"),
    ({"noise": -0.1}, r"noise must be in \[0, inf\)"),
    ({"max_cells": 0}, r"max_cells must be in \[1, inf\)"),
    ({"threads": -1}, r"threads must be in \[0, inf\)"),
    ({"ae_epoch": 3}, "has no parameter 'ae_epoch'; allowed: clusters, n_clusters, latent"),
])
def test_invalid_parameters_are_one_line_errors_naming_the_parameter(params, message):
    card = registry.find_card("scbig")
    with pytest.raises(BenchError, match=message) as caught:
        registry.build(card, {**registry.resolve_params(card, "fast"), **params})
    assert "\n" not in str(caught.value)


def test_the_flat_parameters_reach_their_components():
    model = fast_model(ae_epochs=3, ae_dropout=0.2, structure_every=7, correlation_weight=0.5, flow_layers=3)
    params = model.params
    assert (params.pretraining.epochs, params.encoder.dropout, params.encoder.gcae()["dropout"]) == (3, 0.2, 0.2)
    assert (params.structure.every, params.structure.correlation_weight) == (7, 0.5)
    assert params.network.sizes()["x_dims"] == (128, 128, 128)
    with pytest.raises(TypeError, match="unknown parameter 'epochs'"):
        ScBIGModel(epochs=3)


def official_resources(genes: list[str], folder) -> dict[str, str]:
    """The four official resources, tiny, in their published layouts: GeneCompass's nested pickle (half
    the genes by symbol, a quarter by Ensembl id), STRING's gzipped info and links, ESM2's single dict of
    tensors, Reactome's zipped GMT (four pathways of ten genes)."""
    rng = np.random.default_rng(0)
    ensembl = {g: f"ENSG{i:05d}" for i, g in enumerate(genes[1::4])}
    vectors = folder / "genecompass_gene_embeddings_full.pkl"
    vectors.write_bytes(pickle.dumps({
        "gene_embeddings": {ensembl[g]: rng.normal(size=6).astype(np.float32) for g in genes[1::4]},
        "gene_symbol_embeddings": {g: rng.normal(size=6).astype(np.float32) for g in genes[::2]},
        "symbol_to_ensembl": ensembl, "embedding_dim": 6}))
    info = folder / "9606.protein.info.v12.0.txt.gz"
    with gzip.open(info, "wt") as handle:
        handle.write("#string_protein_id\tpreferred_name\tprotein_size\tannotation\n"
                     + "".join(f"9606.P{i}\t{g}\t100\t-\n" for i, g in enumerate(genes)))
    links = folder / "9606.protein.links.v12.0.txt.gz"
    with gzip.open(links, "wt") as handle:
        handle.write("protein1 protein2 combined_score\n"
                     + "".join(f"9606.P{i} 9606.P{i + 1} 900\n" for i in range(0, 40, 2)))
    esm = folder / "ESM2_pert_features.pt"
    torch.save({g: torch.randn(5) for g in genes}, esm)
    gmt = folder / "ReactomePathways.gmt.zip"
    with zipfile.ZipFile(gmt, "w") as archive:
        archive.writestr("ReactomePathways.gmt", "".join(
            f"Pathway {j}\tR-HSA-{j}\t" + "\t".join(genes[j * 10:j * 10 + 10]) + "\n" for j in range(4)))
    return dict(gene_embeddings=str(vectors), string_info=str(info), string_links=str(links), esm_features=str(esm),
                pathways_gmt=str(gmt))


@pytest.mark.slow
def test_official_resources_replace_the_offline_priors(small_synthetic, tmp_path):
    """The official files, given as parameters: the model reads each, conditions are ESM2 vectors alone
    (as official), and it still predicts."""
    resources = official_resources(list(small_synthetic.var_names), tmp_path)
    model = fast_model(calls=20, ae_epochs=2, **resources)
    model.fit(TrainData(cells=small_synthetic, val=small_synthetic[:0], seed=1))
    assert model.flow.features.dim == 5
    means = model.predict(PredictQuery(["G00001+G00002"], small_synthetic[:30], "type_0")).means
    assert np.isfinite(means.to_numpy()).all()
    for name in ("gene_embeddings", "string_links", "esm_features", "pathways_gmt"):
        paths = {**resources, name: str(tmp_path / "missing")}
        with pytest.raises(ModelError, match="missing"):
            fast_model(calls=2, ae_epochs=1, **paths).fit(
                TrainData(cells=small_synthetic, val=small_synthetic[:0], seed=1))


def test_pathway_filter_of_a_gmt_file_follows_the_card(small_synthetic, tmp_path):
    """The presets keep every Reactome pathway with a panel gene, in file order (the official reader);
    gmt_min_genes, gmt_max_genes and gmt_max_pathways narrow it."""
    genes = list(small_synthetic.var_names)
    gmt = tmp_path / "ReactomePathways.gmt"
    gmt.write_text("".join(f"Pathway {n}\tR-HSA-{n}\t" + "\t".join(genes[:n]) + "\n" for n in (1, 6, 3, 8)))
    train = TrainData(cells=small_synthetic, val=small_synthetic[:0])
    card = registry.find_card("scbig")
    for preset in ("paper", "default"):
        params = registry.resolve_params(card, preset)
        sources = priors.PriorParams(pathways_gmt=str(gmt), gmt_min_genes=params["gmt_min_genes"],
                                       gmt_max_genes=params["gmt_max_genes"],
                                       gmt_max_pathways=params["gmt_max_pathways"], max_pathways=params["max_pathways"])
        assert [len(p) for p in priors.pathways(train, sources)] == [1, 6, 3, 8]
    narrow = priors.PriorParams(pathways_gmt=str(gmt), gmt_min_genes=5, gmt_max_genes=7, gmt_max_pathways=1)
    assert [len(p) for p in priors.pathways(train, narrow)] == [6]


# The official configuration, written out by hand from the release (ttruan2426-dot/scBIG:
# scripts/train_norman_additive.sh, configs/norman_additive_grc.json, scbig/models/_gcae_impl.py,
# cellflow defaults; docs/scbig.md cites the lines).
OFFICIAL = {
    "n_clusters": 32, "latent_dim": 50, "chunk_size": 64, "width": 256, "n_blocks": 3, "n_modules": 8,
    "heads": 8, "mlp_dim": 512, "ae_dropout": 0.1, "ae_epochs": 100, "ae_batch_size": 256,
    "ae_learning_rate": 1e-4, "ae_eval_every": 5, "ae_patience": 4, "ae_eval_cells": 300,
    "time_width": 1024, "flow_width": 1024, "flow_layers": 2, "flow_dropout": 0.1, "condition_dim": 256,
    "seed_dim": 64, "seed_heads": 8, "condition_dropout": 0.9, "calls": 500_000, "accumulation": 20,
    "batch_size": 1024, "learning_rate": 5e-5, "grad_clip": 1.0, "noise": 0.5, "ot_epsilon": 1.0,
    "ot_threshold": 1e-3, "ot_iterations": 2000, "eval_every": 100_000, "eval_cells": 500, "rtol": 1e-5,
    "atol": 1e-5, "structure_every": 1000, "structure_conditions": 3, "structure_cells": 64,
    "structure_learning_rate": 5e-5, "structure_clip": 1.0, "correlation_weight": 0.1,
    "pathway_weight": 0.1, "max_cells": 500, "string_min_score": 700, "gmt_min_genes": 1,
    "gmt_max_genes": 0, "gmt_max_pathways": 0,
}


def test_the_paper_preset_is_the_official_configuration():
    params = registry.resolve_params(registry.find_card("scbig"), "paper")
    assert {name: params[name] for name in OFFICIAL} == OFFICIAL
