"""The biolord adapter: biolord's own API as its Norman experiment uses it, on the harness's data, fenced."""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import fields
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from bench.adapters.biolord import params as biolord_params
from bench.adapters.kit.gene_features import GeneFeatures
from bench.core import registry
from bench.core.api import PredictQuery, StopTraining, TrainData
from bench.core.conditions import CONTROL, genes_of, is_single, perturbed_genes
from bench.core.errors import BenchError, ModelError
from bench.core.isolated_import import isolated
from bench.core.pseudobulk import pseudobulk
from bench.data.simulator import simulate
from bench.evaluation import splits

CARD = registry.find_card("biolord")
FAST = registry.resolve_params(CARD, "fast")
ATTRIBUTE = "perturbation_features"

# biolord's arguments, each value different from biolord 0.0.3's own default and from the card's, so that an
# adapter that drops or misplaces one trains another model; unknown_attributes, whose two values are biolord's
# default and the card's, is tried both ways (True makes the latent-code settings count). Grouped by the call
# that takes them, as base_experiment_norman.py passes them.
MODULE_PARAMS = {
    "n_latent_attribute_ordered": 5, "reconstruction_penalty": 50.0, "unknown_attribute_penalty": 3.0,
    "use_batch_norm": False, "use_layer_norm": True, "unknown_attribute_noise_param": 0.3, "unknown_attributes": True,
    "attribute_dropout_rate": 0.05, "decoder_width": 12, "decoder_depth": 3, "decoder_activation": False,
    "attribute_nn_width": 10, "attribute_nn_depth": 3, "attribute_nn_activation": False,
}
PLAN_KWARGS = {
    "latent_lr": 0.02, "latent_wd": 0.003, "decoder_lr": 0.004, "decoder_wd": 0.002, "attribute_nn_lr": 0.006,
    "attribute_nn_wd": 0.001, "step_size_lr": 2, "cosine_scheduler": True, "scheduler_final_lr": 0.001,
}
# One validation row: biolord's R^2 needs three rows of a group (biolord/_module.py:549), so its validation
# metric stays 0 and patience 1 stops training at the second validation, after epoch 4 of 6.
TRAIN_ARGUMENTS = {"max_epochs": 6, "batch_size": 5, "early_stopping": True, "early_stopping_patience": 1,
                   "check_val_every_n_epoch": 2}
N_LATENT = 3
N_COMPONENTS = 4
MOVED = "G00031"  # a training single of the small simulator's split, moved to validation
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(small_synthetic):
    """The simulator's simulation split, with the training single ``MOVED`` validated on instead."""
    split = splits.make(small_synthetic, "simulation", 1, "synthetic", "sha")
    parts = splits.apply(split, small_synthetic)
    moved = (parts.train.obs["condition"] == MOVED).to_numpy()
    assert moved.any() and not parts.val.obs["condition"].map(is_single).any()
    train, val = parts.train[~moved].copy(), parts.train[moved].copy()
    return SimpleNamespace(train=train, val=val, test=sorted(set(parts.test.obs["condition"])),
                           control=parts.query_control)


def train_data(data, seed=4, **hooks) -> TrainData:
    return TrainData(cells=data.train, val=data.val, seed=seed, dataset="synthetic", **hooks)


def fit_adapter(data, values: dict, seed=4, **hooks):
    model = registry.build(CARD, values)
    model.fit(train_data(data, seed, **hooks))
    return model


def tutorial_prediction(data, seed: int, folder, genes_wanted: list[str],
                        module_params: dict) -> tuple[dict, pd.DataFrame]:
    """biolord trained and queried as ``scripts/biolord/norman/base_experiment_norman.py`` does, written here
    from that script: a table of single-perturbation means with the genes' features as ordered attribute,
    ``split`` train/test, then the control row's expression with a gene's attribute swapped in. Returns the
    predicted singles and the training means."""
    means = pseudobulk(data.train).xs("type_0", level="cell_type")
    val_means = pseudobulk(data.val).xs("type_0", level="cell_type")
    trained = sorted(c for c in means.index if is_single(c))
    features = GeneFeatures.fit(train_data(data, seed), sorted(perturbed_genes(means.index)), N_COMPONENTS)

    def attribute(genes):
        go, loadings = features.lookup(genes)
        return np.concatenate([go, loadings], axis=1)

    rows = pd.concat([means.loc[[CONTROL, *trained]], val_means.loc[[MOVED]]])
    table = ad.AnnData(X=rows.to_numpy(dtype=np.float32), var=pd.DataFrame(index=data.train.var_names))
    table.obs_names = [f"row{i}" for i in range(len(rows))]
    table.obs["condition"] = list(rows.index)
    table.obs["split"] = ["train"] * (1 + len(trained)) + ["test"]
    table.obsm[ATTRIBUTE] = np.concatenate([np.zeros((1, features.go_dim + features.data_dim), np.float32),
                                            attribute([*trained, MOVED])])
    with isolated(seed, folder, "biolord") as (biolord,):
        biolord.Biolord.setup_anndata(table, ordered_attributes_keys=[ATTRIBUTE], categorical_attributes_keys=None)
        model = biolord.Biolord(table, n_latent=N_LATENT, module_params={**module_params, "seed": seed},
                                train_classifiers=False, split_key="split")
        model.train(**TRAIN_ARGUMENTS, plan_kwargs=PLAN_KWARGS, enable_checkpointing=False, accelerator="cpu")
        control = model.get_dataset(table[table.obs["condition"] == CONTROL].copy())
        predicted = {}
        for gene, row in zip(genes_wanted, attribute(genes_wanted)):
            swapped = dict(control)
            swapped[ATTRIBUTE] = torch.from_numpy(row).view(1, -1).repeat(control["X"].shape[0], 1)
            expression, _ = model.module.get_expression(swapped)
            predicted[gene] = expression.cpu().numpy().flatten()
    return predicted, means


@pytest.mark.parametrize("unknown_attributes", [True, False])
def test_predictions_are_biolords_own_as_its_norman_experiment_makes_them(data, tmp_path, unknown_attributes):
    """Unseen singles from biolord itself, bit for bit; doubles its experiment's way (its singles, observed if
    trained, added, less the control mean), equal up to float64 rounding of the training means."""
    module_params = {**MODULE_PARAMS, "unknown_attributes": unknown_attributes}
    settings = {**module_params, **PLAN_KWARGS, **TRAIN_ARGUMENTS, "n_latent": N_LATENT, "n_components": N_COMPONENTS,
                "threads": 1}
    reports = []
    adapter = fit_adapter(data, settings, report=lambda step, value: reports.append(step))
    assert reports == [2, 4]  # early stopping as TRAIN_ARGUMENTS plans it
    unseen_singles = [c for c in data.test if is_single(c)]
    trained = set(data.train.obs["condition"])
    one_seen = next(c for c in data.test if len(genes_of(c)) == 2 and len(set(genes_of(c)) & trained) == 1
                    and len(set(genes_of(c)) & set(unseen_singles)) == 1)
    none_seen = next(c for c in data.test if len(genes_of(c)) == 2 and set(genes_of(c)) <= set(unseen_singles))
    queried = [none_seen, *unseen_singles, one_seen]
    ours = adapter.predict(PredictQuery(queried, data.control, "type_0", seed=9)).means
    assert list(ours.columns) == list(data.train.var_names)
    direct, means = tutorial_prediction(data, 4, tmp_path, unseen_singles, module_params)
    for single in unseen_singles:
        np.testing.assert_array_equal(ours.loc[single].to_numpy(), direct[single])
    control = means.loc[CONTROL].to_numpy()
    a, b = genes_of(none_seen)
    np.testing.assert_allclose(ours.loc[none_seen].to_numpy(), direct[a] + direct[b] - control, rtol=0, atol=1e-9)
    seen, unseen = sorted(genes_of(one_seen), key=lambda gene: gene not in trained)
    np.testing.assert_allclose(ours.loc[one_seen].to_numpy(), means.loc[seen].to_numpy() + direct[unseen] - control,
                               rtol=0, atol=1e-9)
    assert not np.allclose(direct[unseen_singles[0]], control, atol=1e-3)  # biolord's own output, not the control


def test_a_seen_condition_is_its_training_mean_and_cells_are_not_predicted(data):
    adapter = fit_adapter(data, FAST)
    seen = sorted(set(data.train.obs["condition"]) - {CONTROL})
    prediction = adapter.predict(PredictQuery(seen, data.control, "type_0", seed=1))
    for condition in seen:
        cells = data.train[(data.train.obs["condition"] == condition).to_numpy()].X
        np.testing.assert_allclose(prediction.means.loc[condition].to_numpy(), np.asarray(cells.mean(axis=0)).ravel(),
                                   rtol=1e-6)
    assert prediction.cells is None


def process_state() -> dict:
    return {"numpy": np.random.get_state()[1].copy(), "python": random.getstate(), "torch": torch.get_rng_state(),
            "warnings": list(warnings.filters), "threads": torch.get_num_threads(), "cwd": os.getcwd(),
            "environment": dict(os.environ),
            "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)}


def assert_same_state(before: dict, after: dict) -> None:
    for key in before:
        assert np.array_equal(before[key], after[key]) if key in ("numpy", "torch") else before[key] == after[key], key


def test_process_state_is_unchanged_and_progress_is_reported(data):
    before = process_state()
    reports, progress = [], []
    adapter = fit_adapter(data, FAST, report=lambda step, value: reports.append((step, value)),
                          progress=lambda phase, done=0, total=None: progress.append((phase, done, total)))
    adapter.predict(PredictQuery(data.test, data.control, "type_0", seed=2))
    assert_same_state(before, process_state())
    epochs = FAST["max_epochs"]
    assert [step for step, _ in reports] == list(range(1, epochs + 1))
    assert all(np.isfinite(value) for _, value in reports)
    assert progress[0] == ("training", 0, epochs) and progress[-1] == ("training", epochs, epochs)


def test_one_model_per_cell_type_reporting_one_sequence_of_epochs():
    adata = simulate(n_cells=700, n_genes=60, n_modules=4, n_singles=8, n_doubles=6, n_cell_types=2, seed=3)
    parts = splits.apply(splits.make(adata, "simulation", 1, "synthetic", "sha"), adata)
    reports, progress = [], []
    model = registry.build(CARD, FAST)
    model.fit(TrainData(cells=parts.train, val=parts.val, seed=1, report=lambda step, value: reports.append(step),
                        progress=lambda phase, done=0, total=None: progress.append((done, total))))
    epochs = FAST["max_epochs"]
    assert sorted(model.models) == ["type_0", "type_1"]
    assert reports == list(range(1, 2 * epochs + 1)) and progress[-1] == (2 * epochs, 2 * epochs)
    conditions = sorted(set(parts.test.obs["condition"]))
    first, second = (model.predict(PredictQuery(conditions, parts.query_control, cell_type)).means
                     for cell_type in ("type_0", "type_1"))
    assert not np.allclose(first.to_numpy(), second.to_numpy())


def test_a_pruned_trial_stops_training_and_leaves_the_process_as_it_was(data):
    before = process_state()

    def prune(step, value):
        raise StopTraining

    with pytest.raises(StopTraining):
        fit_adapter(data, FAST, report=prune)
    assert_same_state(before, process_state())


@pytest.mark.parametrize("values, message", [
    ({"decoder_width": 0}, "decoder_width must be in [1, inf)"),
    ({"attribute_dropout_rate": 1.0}, "attribute_dropout_rate must be in [0, 1)"),
    ({"attribute_nn_lr": 0.0}, "attribute_nn_lr must be in (0, inf)"),
    ({"unknown_attributes": "yes"}, "parameter 'unknown_attributes' must be bool"),
    ({"latent_dim": 8}, "has no parameter 'latent_dim'"),
])
def test_bad_parameters_are_one_line_errors(values, message):
    with pytest.raises(BenchError) as error:
        registry.build(CARD, values)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_data_biolord_cannot_use_is_a_one_line_model_error(data):
    rows = 1 + sum(map(is_single, set(data.train.obs["condition"])))  # biolord's rows: the control and singles
    with pytest.raises(ModelError, match="one row") as error:
        fit_adapter(data, {**FAST, "use_batch_norm": True, "batch_size": rows - 1})
    assert "\n" not in str(error.value)
    no_features = data.train.copy()
    no_features.var_names = [f"other{i}" for i in range(no_features.n_vars)]  # perturbed genes no longer measured
    with pytest.raises(ModelError, match="no features|there are none"):
        registry.build(CARD, FAST).fit(TrainData(cells=no_features, val=no_features[:0], seed=1))
    adapter = fit_adapter(data, FAST)
    with pytest.raises(ModelError, match="not trained on cell type 'type_9'"):
        adapter.predict(PredictQuery(data.test, data.control, "type_9"))


def test_biolords_default_plan_crashes_and_the_adapter_passes_what_it_lacks(data, tmp_path):
    """biolord 0.0.3 reads ``latent_lr`` before setting it when ``attribute_nn_lr`` is not given; the card's
    defaults (only fewer epochs) train."""
    table = ad.AnnData(X=np.ones((3, 2), np.float32))
    table.obsm[ATTRIBUTE] = np.eye(3, dtype=np.float32)
    with isolated(0, tmp_path, "biolord") as (biolord,):
        biolord.Biolord.setup_anndata(table, ordered_attributes_keys=[ATTRIBUTE])
        model = biolord.Biolord(table, n_latent=2)
        with pytest.raises(AttributeError, match="latent_lr"):
            model.train(max_epochs=1)
    assert {"attribute_nn_lr", "attribute_nn_wd"} <= set(biolord_params.PLAN)
    adapter = fit_adapter(data, {"max_epochs": 2, "threads": 1})
    single = next(c for c in data.test if is_single(c))
    assert np.isfinite(adapter.predict(PredictQuery([single], data.control, "type_0")).means.to_numpy()).all()


def test_every_parameter_goes_to_the_biolord_call_that_takes_it():
    """The card's parameters are biolord's own, in the groups its Norman experiment passes them in (and the
    parity test above sets every one of them)."""
    assert set(biolord_params.CONSTRUCTOR) == {"n_latent"}
    assert set(biolord_params.MODULE) == set(MODULE_PARAMS)
    assert set(biolord_params.PLAN) == set(PLAN_KWARGS)
    assert set(biolord_params.TRAIN) == set(TRAIN_ARGUMENTS)
    harness = {f.name for f in fields(biolord_params.BiolordParams)} - {"n_latent", *MODULE_PARAMS, *PLAN_KWARGS,
                                                                         *TRAIN_ARGUMENTS}
    assert harness == {"n_components", "threads"}
