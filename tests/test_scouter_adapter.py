"""The Scouter adapter: scouter-learn's own API on our split, its process-wide side effects contained."""

from __future__ import annotations

import os
import random
import sys
import warnings
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
import torch

from bench.adapters.kit.gene_features import GeneFeatures
from bench.adapters.scouter import layer_sizes, scouter_condition
from bench.core import registry
from bench.core.api import PredictQuery, TrainData
from bench.core.conditions import CONTROL, genes_of, perturbed_genes
from bench.core.errors import BenchError, ModelError
from bench.core.isolated_import import isolated
from bench.evaluation import splits

CARD = registry.find_card("scouter")
FAST = registry.resolve_params(CARD, "fast")

# Every setting differs from Scouter's default, so that an adapter that drops one (Scouter then uses its
# own default) predicts something else: the parity test below fails.
NETWORK = dict(n_encoder=(32, 16), n_out_encoder=8, n_decoder=(24,), use_batch_norm=False, use_layer_norm=True,
               dropout_rate=0.05)
TRAINING = dict(nonzero_idx_key="gene_idx_non_dropout", batch_size=48, loss_gamma=0.5, loss_lambda=0.2, lr=0.005,
                sched_gamma=0.7, n_epochs=3, patience=2)
N_PRED, N_COMPONENTS, SEED, QUERY_SEED = 25, 6, 3, 5
CARD_PARAMS = {**NETWORK, **TRAINING, "n_encoder": "32,16", "n_decoder": "24", "n_pred": N_PRED,
               "n_components": N_COMPONENTS, "threads": 1}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def split_data(small_synthetic):
    split = splits.make(small_synthetic, "simulation", 1, "synthetic", "sha")
    return split, splits.apply(split, small_synthetic)


def tutorial_condition(condition: str) -> str:
    """Scouter's condition names as its tutorial has them (GEARS' ``A+ctrl``, ``A+B``, ``ctrl``)."""
    return condition if condition == CONTROL or "+" in condition else f"{condition}+{CONTROL}"


def scouter_directly(train: TrainData, query: PredictQuery, folder) -> pd.DataFrame:
    """Scouter as its tutorial runs it (demo/OwnDataTutorial.ipynb: an AnnData with ``obs['condition']``
    and ``var['gene_name']``, an embedding table with a ``ctrl`` row of zeros, ``setup_ad``, ``gene_ranks``,
    ``get_dropout_non_zero_genes``, ``split_Train_Val_Test``, ``Scouter``, ``model_init``, ``train``,
    ``pred``), on the harness's cells and gene features. Two departures, the adapter's rules: the harness's
    validation conditions are the validation split (``val_conds``), and ``pred`` starts from the query's
    control cells (``ctrl_adata``). The table holds the test genes from the start (``slim=False`` keeps
    them), as the tutorial's holds every gene; the adapter appends them at prediction instead."""
    cells = ad.concat([train.cells, train.val])
    obs = pd.DataFrame({"condition": [tutorial_condition(c) for c in cells.obs["condition"].astype(str)]},
                       index=cells.obs_names)
    obs["condition"] = obs["condition"].astype("category")
    var = pd.DataFrame({"gene_name": list(cells.var_names)}, index=cells.var_names)
    adata = ad.AnnData(X=sp.csr_matrix(cells.X, dtype=np.float32), obs=obs, var=var)
    genes = sorted(perturbed_genes(cells.obs["condition"].unique()) | perturbed_genes(query.conditions))
    features = GeneFeatures.fit(train, sorted(perturbed_genes(train.conditions)), N_COMPONENTS)
    embd = pd.DataFrame(np.hstack(features.lookup(genes)), index=genes)
    embd = pd.concat([pd.DataFrame([np.zeros(embd.shape[1])], columns=embd.columns, index=[CONTROL]), embd])
    val_conditions = sorted({tutorial_condition(c) for c in train.val.obs["condition"].astype(str)})
    with isolated(SEED, folder, "scouter") as (scouter,):
        data = scouter.ScouterData(adata=adata, embd=embd, key_label="condition", key_var_genename="gene_name")
        data.setup_ad("embd_index", slim=False)
        data.gene_ranks()
        data.get_dropout_non_zero_genes()
        data.split_Train_Val_Test(val_conds=val_conditions, if_test=False)
        model = scouter.Scouter(data, device="cpu")
        model.model_init(**NETWORK)
        model.train(**TRAINING)
    with isolated(QUERY_SEED, folder, "scouter"):
        model.ctrl_adata = ad.AnnData(X=sp.csr_matrix(query.control[:, train.genes].X, dtype=np.float32))
        means = {c: model.pred([tutorial_condition(c)], n_pred=N_PRED, seed=QUERY_SEED)[tutorial_condition(c)]
                 .mean(axis=0, dtype=np.float64) for c in query.conditions}
    return pd.DataFrame(means, index=train.genes).T.loc[query.conditions]


@pytest.fixture(scope="module")
def parity(small_synthetic, tmp_path_factory):
    """The adapter and Scouter's own API, trained with the same settings and seed, and one query: test
    conditions with an unseen single and an unseen double, control cells with their genes shuffled. One
    gene is never detected, as many are in real data: Scouter's loss leaves it out under
    ``gene_idx_non_zeros`` (its default) and keeps it under ``gene_idx_non_dropout`` (ours), so the two
    train differently."""
    silent = small_synthetic.copy()
    expression = silent.X.toarray()
    expression[:, 0] = 0.0
    silent.X = sp.csr_matrix(expression)
    split = splits.make(silent, "simulation", 1, "synthetic", "sha")
    data = splits.apply(split, silent)
    train = TrainData(cells=data.train, val=data.val, seed=SEED, dataset="synthetic")
    shuffled = list(np.random.default_rng(0).permutation(data.train.var_names))
    query = PredictQuery(sorted(split.test)[::-1], data.query_control[:, shuffled], "type_0", seed=QUERY_SEED)
    reports = []
    model = registry.build(CARD, {**registry.resolve_params(CARD), **CARD_PARAMS})
    fit = TrainData(cells=data.train, val=data.val, seed=SEED, dataset="synthetic",
                    report=lambda step, value: reports.append((step, value)))
    model.fit(fit)
    trained_genes = set(model.models["type_0"].embd_idx_dict)
    prediction = model.predict(query)
    direct = scouter_directly(train, query, tmp_path_factory.mktemp("scouter"))
    return SimpleNamespace(model=model, query=query, prediction=prediction, direct=direct, split=split, data=data,
                           reports=reports, trained_genes=trained_genes, diagnostics=fit.diagnostics)


def test_predictions_are_scouters_own_under_the_querys_gene_order(parity):
    """Equal within 1e-5, not bit for bit, for one reason: the first Scouter training of a process
    computes a few gradients of its first backward pass (its LayerNorms') differently in the last bits, a
    torch CPU first-call effect seen whichever route trains first (every later training with the same
    settings gives identical bits); it leaves up to 2e-7 in these means. A dropped setting or a gene
    mis-ordered moves them by 3e-4 (``n_pred``) to 6. The adapter's validation conditions are named
    reversed, which changes only the order in which Scouter sums their loss, read for early stopping."""
    means = parity.prediction.means
    assert list(means.columns) == parity.query.genes != parity.model.genes
    assert list(means.index) == parity.query.conditions
    expected = parity.direct[parity.query.genes]
    np.testing.assert_allclose(means.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-5)


def test_predicted_cells_are_the_means_cells(parity):
    cells = parity.prediction.cells
    assert list(cells.var_names) == parity.query.genes
    assert cells.n_obs == len(parity.query.conditions) * N_PRED
    for condition in parity.query.conditions:
        own = cells[(cells.obs["condition"] == condition).to_numpy()].X
        np.testing.assert_allclose(own.mean(axis=0), parity.prediction.means.loc[condition], rtol=1e-6, atol=1e-6)


def test_unseen_single_and_double_are_predicted_from_their_gene_features(parity):
    """Genes no training or validation condition perturbs enter Scouter's table at prediction."""
    seen = perturbed_genes(parity.split.train) | perturbed_genes(parity.split.val)
    single = next(c for c, group in parity.split.test.items() if group == "unseen_single")
    double = next(c for c, group in parity.split.test.items() if group == "combo_seen0")
    assert not set(genes_of(single)) & seen and not set(genes_of(double)) & seen
    assert not (set(genes_of(single)) | set(genes_of(double))) & parity.trained_genes
    means = parity.prediction.means
    assert np.isfinite(means.loc[[single, double]].to_numpy()).all()
    assert not np.allclose(means.loc[single], means.loc[double])
    again = parity.model.predict(PredictQuery([double, single], parity.query.control, "type_0", seed=QUERY_SEED))
    pd.testing.assert_frame_equal(again.means, means.loc[[double, single]])  # appending changed no row


def test_reports_scouters_validation_loss_every_epoch(parity):
    steps = [step for step, _ in parity.reports]
    history = parity.model.models["type_0"].loss_history
    assert steps == list(range(1, len(history["val_loss"]) + 1)) and len(steps) == parity.diagnostics["epochs_trained"]
    assert [value for _, value in parity.reports] == [-loss for loss in history["val_loss"]]


def test_early_stopping_follows_patience(split_data):
    """With a learning rate too small to move the validation loss (and no batch norm, whose running
    statistics would), Scouter stops ``patience`` epochs after its first; progress counts the epochs of
    ``n_epochs``."""
    _, data = split_data
    model = registry.build(CARD, {**FAST, "lr": 1e-12, "n_epochs": 10, "patience": 2, "use_batch_norm": False})
    reports, progress = [], []
    train = TrainData(cells=data.train, val=data.val, seed=1, report=lambda step, value: reports.append(step),
                      progress=lambda phase, done=0, total=None: progress.append((phase, done, total)))
    model.fit(train)
    assert reports == [1, 2, 3] and train.diagnostics == {"epochs_trained": 3.0}
    assert progress == [("training", step, 10) for step in range(4)]


def test_fit_and_predict_leave_the_process_as_they_found_it(split_data, capsys):
    """Generator states, warnings filters, working directory, environment, torch's threads, scanpy's
    verbosity and the streams are as before; Scouter printed nothing."""
    _, data = split_data
    model = registry.build(CARD, FAST)
    verbosity = sc.settings.verbosity

    def state():
        return dict(torch=torch.get_rng_state().tolist(), numpy=np.random.get_state()[1].tolist(),
                    random=random.getstate()[1], filters=repr(warnings.filters), cwd=os.getcwd(),
                    env=dict(os.environ), threads=torch.get_num_threads(), verbosity=int(sc.settings.verbosity),
                    streams=(sys.stdout, sys.stderr))

    with warnings.catch_warnings():
        torch.manual_seed(1234)
        np.random.seed(99)
        random.seed(7)
        warnings.simplefilter("default")
        warnings.filterwarnings("error", message="bench-probe")
        torch.set_num_threads(2)  # the card runs on one
        sc.settings.verbosity = 2
        try:
            before = state()
            model.fit(TrainData(cells=data.train, val=data.val, seed=1))
            model.predict(PredictQuery(sorted(set(data.test.obs["condition"])), data.query_control, "type_0", seed=1))
            after = state()
        finally:
            torch.set_num_threads(1)
            sc.settings.verbosity = verbosity
    assert sorted(key for key in before if before[key] != after[key]) == []
    assert capsys.readouterr().out == ""  # Scouter's epoch lines and tqdm bars stay inside the fence


@pytest.mark.parametrize("override, message", [
    ("n_encoder='2048;512'", "n_encoder must be layer widths of at least 1 separated by commas"),
    ("n_decoder='0'", "n_decoder must be layer widths"),
    ("lr=0", "lr must be in (0, inf), got 0.0"),
    ("n_epochs=0", "n_epochs must be in [1, inf)"),
    ("dropout_rate=1", "dropout_rate must be in [0, 1)"),
    ("nonzero_idx_key=top20", "nonzero_idx_key must be one of gene_idx_non_zeros, gene_idx_non_dropout"),
    ("n_pred=0", "n_pred must be in [1, inf)"),
    ("use_batch_norm=1", "parameter 'use_batch_norm' must be bool"),
])
def test_bad_parameters_are_one_line_errors(override, message):
    with pytest.raises(BenchError) as error:
        registry.build(CARD, registry.resolve_params(CARD, None, [override]))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_layer_widths_and_condition_names():
    assert layer_sizes("2048,512") == (2048, 512) and layer_sizes(" 64 ") == (64,) and layer_sizes("") == ()
    assert registry.build(CARD, {"n_decoder": ""}).params.network()["n_decoder"] == ()
    assert scouter_condition(CONTROL) == CONTROL and scouter_condition("A") == "A+ctrl"
    assert scouter_condition("A+B") == "A+B" and scouter_condition("A", reverse=True) == "ctrl+A"
    assert scouter_condition("A+B", reverse=True) == "B+A"
    with pytest.raises(ModelError, match="one- and two-gene perturbations, not 'A\\+B\\+C'"):
        scouter_condition("A+B+C")


def test_an_untrained_cell_type_and_other_genes_are_clear_errors(parity):
    control = parity.data.query_control
    condition = parity.query.conditions[0]
    with pytest.raises(ModelError, match="not trained on cell type 'type_9' \\(one model per cell type\\)"):
        parity.model.predict(PredictQuery([condition], control, "type_9"))
    with pytest.raises(ModelError, match="trained on other genes than the query's"):
        parity.model.predict(PredictQuery([condition], control[:, control.var_names[1:]], "type_0"))


def test_training_without_perturbations_is_a_clear_error(split_data):
    _, data = split_data
    controls = data.train[(data.train.obs["condition"] == CONTROL).to_numpy()]
    with pytest.raises(ModelError, match="needs perturbed training conditions"):
        registry.build(CARD, FAST).fit(TrainData(cells=controls, val=data.val))
