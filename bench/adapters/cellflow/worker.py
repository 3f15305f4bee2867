"""CellFlow's side of the ``cellflow`` card: runs in CellFlow's own environment (cellflow-tools 0.0.9), never in
bench's process. ``fit`` trains ``cellflow.model.CellFlow`` as the CellFlow paper's Norman experiment does
(theislab/cellflow_reproducibility, ``figure_4/norman/downstream_analysis/cellflow/train_norman_pca_50.py``;
``docs/cellflow.md`` maps every parameter); ``predict`` loads it and moves the query's control cells.

- Cells are represented by a PCA of the training cells' log-expression (``centered_pca``; the paper: 50
  components), validation and query cells are projected onto it, and predictions are decoded back to genes
  (``reconstruct_pca``: PCs times coordinates plus the training mean).
- A condition is the set of its genes' feature vectors (``gene_1``, ``gene_2``; a single's second gene is
  ``ctrl``, whose vector is zero, which CellFlow's pooling masks out), as the paper's ESM2 vectors are.
- With several cell types, each is a control population of its own (``split_covariates``).
- Validation: every ``valid_freq`` steps and at the end, CellFlow predicts up to ``validation_conditions``
  of the harness's validation conditions; the value reported is the mean over them of the Pearson
  correlation of predicted and observed changes over all genes (decoded from PCA).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import anndata as ad
import bench_worker
import numpy as np
import pandas as pd

CONTROL = "ctrl"
REP = "gene_features"
PCA = "X_pca"
VALIDATION_CONTROLS = 300
PROGRESS_POLL_S = 2.0


def genes_of(condition: str) -> tuple[str, str]:
    """``gene_1``, ``gene_2`` of a condition (``A``, ``A+B``; ``ctrl`` for a missing second gene)."""
    genes = condition.split("+")
    if len(genes) > 2:
        raise ValueError(f"CellFlow's card takes singles and doubles; '{condition}' has {len(genes)} genes")
    return genes[0], genes[1] if len(genes) == 2 else CONTROL


def features(path: str) -> dict[str, np.ndarray]:
    table = np.load(path)
    vectors = {gene: row.astype(np.float32) for gene, row in zip(table["genes"], table["vectors"])}
    vectors[CONTROL] = np.zeros(table["vectors"].shape[1], dtype=np.float32)
    return vectors


def with_features(cells: ad.AnnData, vectors: dict[str, np.ndarray]) -> np.ndarray:
    """Which cells are controls or of a condition whose genes all have features (the others cannot be encoded)."""
    conditions = cells.obs["condition"].astype(str)
    known = {c: c == CONTROL or all(g in vectors for g in genes_of(c)) for c in conditions.unique()}
    return conditions.map(known).to_numpy(dtype=bool)


def annotate(cells: ad.AnnData) -> pd.DataFrame:
    """``obs`` as CellFlow's data manager reads it: the genes, ``control`` and the cell type."""
    conditions = cells.obs["condition"].astype(str)
    pairs = [genes_of(c) if c != CONTROL else (CONTROL, CONTROL) for c in conditions]
    return pd.DataFrame({"gene_1": [p[0] for p in pairs], "gene_2": [p[1] for p in pairs],
                         "control": (conditions == CONTROL).to_numpy(), "condition": conditions.to_numpy(),
                         "cell_type": cells.obs["cell_type"].astype(str).to_numpy()}, index=cells.obs_names)


def dense(cells: ad.AnnData) -> np.ndarray:
    return np.asarray(cells.X.toarray() if hasattr(cells.X, "toarray") else cells.X, dtype=np.float32)


def slim(cells: ad.AnnData, coordinates: np.ndarray, vectors: dict[str, np.ndarray]) -> ad.AnnData:
    """What CellFlow keeps (and pickles with the model): obs, the PCA coordinates and the gene features."""
    data = ad.AnnData(obs=annotate(cells))
    data.obsm[PCA] = coordinates
    data.uns[REP] = vectors
    return data


def layers(count: int, width: int, dropout: float) -> list[dict]:
    """An MLP of ``count`` layers as CellFlow's condition encoder takes it: a list of layer specs (a bare dict,
    as the paper's configuration passes, builds none)."""
    return [{"layer_type": "mlp", "dims": [width] * count, "dropout_rate": dropout}] if count else []


def solver_kwargs(params: dict) -> dict:
    """Keyword arguments of ``OTFlowMatching.predict``: CellFlow's default adaptive Tsit5 (``tsit5``), or
    fixed Euler steps of ``dt0``."""
    import diffrax

    if params["ode_solver"] == "tsit5":
        return {"solver": diffrax.Tsit5(), "dt0": None,
                "stepsize_controller": diffrax.PIDController(rtol=params["rtol"], atol=params["atol"])}
    return {"solver": diffrax.Euler(), "dt0": params["dt0"], "stepsize_controller": diffrax.ConstantStepSize()}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    scale = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / scale) if scale > 0 else float("nan")


def validation_callback(components: np.ndarray, trainer_of):
    """A CellFlow computation callback that reports the mean Pearson delta over the validation conditions."""
    from cellflow.training import ComputationCallback

    class PearsonDelta(ComputationCallback):
        def on_train_begin(self) -> None:
            return None

        def on_log_iteration(self, source, true, predicted, solver) -> dict[str, float]:
            values = []
            for name, conditions in true.items():
                for key, observed in conditions.items():
                    start = np.asarray(source[name][key]).mean(axis=0)
                    change = np.asarray(predicted[name][key]).mean(axis=0) - start
                    values.append(pearson(components @ change, components @ (np.asarray(observed).mean(axis=0)
                                                                             - start)))
            finite = [v for v in values if np.isfinite(v)]
            value = float(np.mean(finite)) if finite else float("nan")
            if finite:
                bench_worker.report(len(trainer_of().training_logs["loss"]), value)
            return {"pearson_delta": value}

        def on_train_end(self, source, true, predicted, solver) -> dict[str, float]:
            return self.on_log_iteration(source, true, predicted, solver)

    return PearsonDelta()


def report_steps(trainer_of, total: int, stop: threading.Event) -> None:
    """Training progress from the trainer's loss log (CellFlow gives callbacks no step)."""
    while not stop.wait(PROGRESS_POLL_S):
        trainer = trainer_of()
        logs = getattr(trainer, "training_logs", None) or {}
        bench_worker.progress("training", min(len(logs.get("loss", [])), total), total)


def fit(job: dict) -> None:
    import optax
    from cellflow.model import CellFlow
    from cellflow.preprocessing import centered_pca, project_pca
    from cellflow.utils import match_linear

    params = job["params"]
    bench_worker.progress("computing the PCA")
    train, val = ad.read_h5ad(job["train"]), ad.read_h5ad(job["val"])
    vectors = features(job["features"])
    train = train[with_features(train, vectors)]
    reference = ad.AnnData(X=dense(train))
    centered_pca(reference, n_comps=min(params["n_components"], min(reference.shape) - 1), keep_centered_data=False)
    components, mean = np.asarray(reference.varm["PCs"]), np.asarray(reference.varm["X_mean"]).ravel()
    coordinates = np.asarray(reference.obsm[PCA], dtype=np.float32)
    several = train.obs["cell_type"].nunique() > 1

    model = CellFlow(slim(train, coordinates, vectors), solver="otfm")
    model.prepare_data(sample_rep=PCA, control_key="control",
                       perturbation_covariates={"target_gene": ("gene_1", "gene_2")},
                       perturbation_covariate_reps={"target_gene": REP},
                       split_covariates=["cell_type"] if several else None)
    validation = validation_cells(train, val, vectors, reference, project_pca, job["seed"])
    if validation is not None:
        count = min(params["validation_conditions"], validation.obs.query("~control")["condition"].nunique())
        model.prepare_validation_data(validation, name="validation", n_conditions_on_log_iteration=count,
                                      n_conditions_on_train_end=count, predict_kwargs=solver_kwargs(params))
    optimizer = optax.adam(params["learning_rate"])
    if params["gradient_accumulation"] > 1:
        optimizer = optax.MultiSteps(optimizer, params["gradient_accumulation"])
    model.prepare_model(
        condition_embedding_dim=params["condition_embedding_dim"], pooling=params["pooling"],
        layers_before_pool={"target_gene": layers(params["layers_before_pool"], params["width_before_pool"],
                                                  params["dropout_before_pool"])},
        layers_after_pool=layers(params["layers_after_pool"], params["width_after_pool"], params["dropout_after_pool"]),
        cond_output_dropout=params["cond_output_dropout"], time_freqs=params["time_freqs"],
        time_encoder_dims=[params["time_encoder_width"]] * params["time_encoder_layers"],
        hidden_dims=[params["hidden_width"]] * params["hidden_layers"], hidden_dropout=params["hidden_dropout"],
        decoder_dims=[params["decoder_width"]] * params["decoder_layers"], decoder_dropout=params["decoder_dropout"],
        probability_path={"constant_noise": params["noise"]},
        match_fn=functools.partial(match_linear, epsilon=params["ot_epsilon"], scale_cost="mean"),
        optimizer=optimizer, seed=job["seed"])
    callbacks = [validation_callback(components, lambda: model.trainer)] if validation is not None else []
    stop = threading.Event()
    threading.Thread(target=report_steps, args=(lambda: model.trainer, params["num_iterations"], stop),
                     daemon=True).start()
    try:
        model.train(num_iterations=params["num_iterations"], batch_size=params["batch_size"],
                    valid_freq=params["valid_freq"], callbacks=callbacks)
    finally:
        stop.set()
    bench_worker.progress("training", params["num_iterations"], params["num_iterations"])
    folder = Path(job["model"])
    folder.mkdir()
    model.save(str(folder))
    np.savez(folder / "pca.npz", components=components, mean=mean)


def validation_cells(train: ad.AnnData, val: ad.AnnData, vectors: dict, reference: ad.AnnData, project_pca,
                     seed: int) -> ad.AnnData | None:
    """The validation conditions whose genes have features, with training controls to start from (CellFlow's
    validation needs controls), projected onto the training PCA; None without any."""
    val = val[with_features(val, vectors) & (val.obs["condition"].astype(str) != CONTROL).to_numpy()]
    if not val.n_obs:
        return None
    controls = np.flatnonzero((train.obs["condition"].astype(str) == CONTROL).to_numpy())
    rng = np.random.default_rng(seed)
    controls = np.sort(rng.choice(controls, size=min(VALIDATION_CONTROLS, len(controls)), replace=False))
    cells = ad.concat([train[controls], val])
    projected = ad.AnnData(X=dense(cells))
    project_pca(projected, ref_adata=reference)
    return slim(cells, np.asarray(projected.obsm[PCA], dtype=np.float32), vectors)


def predict(job: dict) -> None:
    from cellflow.model import CellFlow
    from cellflow.preprocessing import project_pca

    params = job["params"]
    bench_worker.progress("loading CellFlow")
    folder = Path(job["model"])
    model = CellFlow.load(str(folder))
    pca = np.load(folder / "pca.npz")
    control = ad.read_h5ad(job["control"])
    if control.n_obs > params["max_cells"]:
        rows = np.random.default_rng(job["seed"]).choice(control.n_obs, size=params["max_cells"], replace=False)
        control = control[np.sort(rows)]
    projected = ad.AnnData(X=dense(control))
    project_pca(projected, ref_means=pca["mean"][:, None], ref_pcs=pca["components"])
    start = slim(control, np.asarray(projected.obsm[PCA], dtype=np.float32), features(job["features"]))
    pairs = [genes_of(c) for c in job["conditions"]]
    covariates = pd.DataFrame({"gene_1": [p[0] for p in pairs], "gene_2": [p[1] for p in pairs], "control": False,
                               "condition": job["conditions"], "cell_type": job["cell_type"]})
    bench_worker.progress("predicting", 0, len(covariates))
    moved = model.predict(start, covariate_data=covariates, condition_id_key="condition", **solver_kwargs(params))
    cells = [np.asarray(moved[c]) @ pca["components"].T + pca["mean"] for c in job["conditions"]]
    obs = pd.DataFrame({"condition": np.repeat(job["conditions"], [len(c) for c in cells])})
    obs.index = obs.index.astype(str)
    ad.AnnData(X=np.concatenate(cells).astype(np.float32), obs=obs,
               var=pd.DataFrame(index=job["genes"])).write_h5ad(job["output"])


if __name__ == "__main__":
    bench_worker.main({"fit": fit, "predict": predict})
