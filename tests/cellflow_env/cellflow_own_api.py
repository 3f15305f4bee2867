"""CellFlow trained and queried through its own public API as the CellFlow paper's Norman script does
(theislab/cellflow_reproducibility, figure_4/norman/downstream_analysis/cellflow/train_norman_pca_50.py), for
the parity test of the ``cellflow`` card. Run with the CellFlow environment's Python:

    python cellflow_own_api.py inputs.json output.npz

The inputs name the training cells, the query's control cells, the perturbed genes' vectors, the conditions to
predict and the settings; the output holds the decoded mean prediction of each condition (genes in the
training file's order).
"""

import functools
import json
import sys

import anndata as ad
import diffrax
import numpy as np
import optax
from cellflow.model import CellFlow
from cellflow.preprocessing import centered_pca, project_pca
from cellflow.utils import match_linear

inputs = json.load(open(sys.argv[1]))
settings = inputs["settings"]

table = np.load(inputs["features"])
embeddings = {str(g): v.astype(np.float32) for g, v in zip(table["genes"], table["vectors"])}
embeddings["ctrl"] = np.zeros(table["vectors"].shape[1], dtype=np.float32)


def split_genes(obs):
    """gene_1, gene_2 and control as the paper's preprocessing makes them from ``condition``."""
    parts = obs["condition"].astype(str).str.split("+")
    obs["gene_1"] = [p[0] for p in parts]
    obs["gene_2"] = [p[1] if len(p) > 1 else "ctrl" for p in parts]
    obs["control"] = obs["condition"].astype(str) == "ctrl"
    return obs


train = ad.read_h5ad(inputs["train"])
train.X = np.asarray(train.X.toarray() if hasattr(train.X, "toarray") else train.X, dtype=np.float32)
train.obs = split_genes(train.obs.copy())
centered_pca(train, n_comps=settings["n_components"], keep_centered_data=False)
train.uns["esm2"] = embeddings

model = CellFlow(train, solver="otfm")
model.prepare_data(sample_rep="X_pca", control_key="control",
                   perturbation_covariates={"target_gene": ("gene_1", "gene_2")},
                   perturbation_covariate_reps={"target_gene": "esm2"})
mlp = [{"layer_type": "mlp", "dims": [settings["width"]], "dropout_rate": 0.0}]
model.prepare_model(
    condition_embedding_dim=settings["condition_embedding_dim"], pooling="attention_token",
    layers_before_pool={"target_gene": mlp}, layers_after_pool=mlp, cond_output_dropout=0.0,
    time_freqs=settings["time_freqs"], time_encoder_dims=[settings["time_width"]],
    hidden_dims=[settings["width"]] * 2, hidden_dropout=0.0, decoder_dims=[settings["width"]] * 2, decoder_dropout=0.0,
    probability_path={"constant_noise": settings["noise"]},
    match_fn=functools.partial(match_linear, epsilon=settings["ot_epsilon"], scale_cost="mean"),
    optimizer=optax.adam(settings["learning_rate"]), seed=settings["seed"])
model.train(num_iterations=settings["num_iterations"], batch_size=settings["batch_size"], valid_freq=10**9)

control = ad.read_h5ad(inputs["control"])
control.X = np.asarray(control.X.toarray() if hasattr(control.X, "toarray") else control.X, dtype=np.float32)
control.obs = split_genes(control.obs.copy())
project_pca(control, ref_adata=train)
control.uns["esm2"] = embeddings
conditions = inputs["conditions"]
covariates = split_genes(ad.AnnData(obs={"condition": conditions}).obs.copy())
covariates["control"] = False
predicted = model.predict(control, covariate_data=covariates, condition_id_key="condition", solver=diffrax.Euler(),
                          dt0=settings["dt0"], stepsize_controller=diffrax.ConstantStepSize())
pcs, mean = np.asarray(train.varm["PCs"]), np.asarray(train.varm["X_mean"]).ravel()
np.savez(sys.argv[2], means=np.stack([(np.asarray(predicted[c]) @ pcs.T + mean).mean(axis=0) for c in conditions]))
