"""The base class of an adapter whose model runs in its own environment (``kit.environment``).

``fit`` and ``predict`` each start the adapter's ``WORKER`` script in that environment as a subprocess
and exchange files with it in a folder the adapter keeps while it lives: the training and validation
cells (``train.h5ad``, ``val.h5ad``), the query's control cells (``control.h5ad``), what the adapter adds
(``fit_inputs``, ``predict_inputs``), the trained model (``model/``, the worker's own format) and the
predicted cells (``prediction.h5ad``, ``obs['condition']``, the query's genes). No code of the model's
package runs in bench's process. The worker (see ``worker/bench_worker.py``) runs on the run's threads
(the BLAS/OpenMP variables, and XLA's for JAX) and seed, and its progress, validation values and
diagnostics reach the run as a model of bench's own would send them; its output goes to ``worker.log``
in the folder, and a failure is one line naming that log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import anndata as ad
import numpy as np
import pandas as pd

from bench.adapters.kit.base import Adapter
from bench.adapters.kit.environment import ModelEnvironment, isolated_environment, stream_lines
from bench.core import threads
from bench.core.api import Prediction, PredictQuery, TrainData
from bench.core.errors import ModelError

PROTOCOL_FOLDER = Path(__file__).resolve().parent / "worker"
PREDICTION = "prediction.h5ad"


class EnvironmentAdapter(Adapter):
    """Subclasses set ``WORKER`` (the worker script's path) and may add inputs with ``fit_inputs`` and
    ``predict_inputs``. ``requirements`` is set by ``registry.build`` from the card's ``environment``."""

    WORKER: ClassVar[Path]
    requirements: Path | None = None
    name = "model"

    def environment(self) -> ModelEnvironment:
        if self.requirements is None:
            raise ModelError(f"{type(self).__name__} runs in its own environment, but its card names none; "
                             "add environment = \"<requirements file>\" to the card")
        return ModelEnvironment(self.requirements, self.name)

    def fit_inputs(self, train: TrainData, folder: Path) -> dict:
        """Files the worker needs besides the cells, written to ``folder``; returns what the job says of them."""
        return {}

    def predict_inputs(self, query: PredictQuery, folder: Path) -> dict:
        return {}

    def fit(self, train: TrainData) -> None:
        environment = self.environment()
        environment.create(train.progress)
        self.folder = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        weakref.finalize(self, shutil.rmtree, self.folder, True)
        train.progress("writing the training data")
        _write_cells(train.cells, self.folder / "train.h5ad")
        _write_cells(train.val, self.folder / "val.h5ad")
        job = {"task": "fit", "seed": train.seed, "device": train.device, "genes": train.genes,
               "train": "train.h5ad", "val": "val.h5ad", "model": "model",
               **self.fit_inputs(train, self.folder)}
        self._run(environment, job, train.progress, train.report, train.diagnostics)

    def predict(self, query: PredictQuery) -> Prediction:
        if not hasattr(self, "folder"):
            raise ModelError(f"{self.name} must be fitted before it predicts")
        _write_cells(query.control, self.folder / "control.h5ad")
        job = {"task": "predict", "seed": query.seed, "conditions": list(query.conditions),
               "cell_type": query.cell_type, "genes": query.genes, "control": "control.h5ad", "model": "model",
               "output": PREDICTION, **self.predict_inputs(query, self.folder)}
        self._run(self.environment(), job, query.progress)
        return _prediction(self.folder / PREDICTION, query)

    def _run(self, environment: ModelEnvironment, job: dict, progress: Callable[..., None],
             report: Callable[[int, float], None] | None = None, diagnostics: dict | None = None) -> None:
        job = {**job, "params": dataclasses.asdict(self.params)}
        path = self.folder / f"{job['task']}.json"
        path.write_text(json.dumps(job))
        log = self.folder / "worker.log"
        command = [str(environment.python), str(self.WORKER), str(path)]
        said = {}
        with open(log, "a") as output:
            def heard(line: str) -> None:
                error = _handle(line, progress, report, diagnostics, output)
                if error:
                    said["error"] = error

            code = stream_lines(command, heard, cwd=self.folder, stderr=output,
                                env=_worker_environment(getattr(self.params, "threads", 0)))
        if code:
            reason = said.get("error") or _last_line(log) or f"exit code {code}"
            raise ModelError(f"{self.name} failed in its environment: {reason} (log: {log})")


def _worker_environment(requested: int) -> dict[str, str]:
    """The worker's variables: bench's less its package path, with the protocol module on the path and every
    thread pool (BLAS, OpenMP, XLA's CPU client) held to the run's threads."""
    count = requested or int(os.environ.get("OMP_NUM_THREADS", 0)) or threads.usable_cores()
    variables = isolated_environment() | threads.environment(count)
    variables["PYTHONPATH"] = str(PROTOCOL_FOLDER)
    flags = f"--xla_cpu_multi_thread_eigen={'true' if count > 1 else 'false'} intra_op_parallelism_threads={count}"
    variables["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), flags]))
    return variables


def _handle(line: str, progress: Callable[..., None], report: Callable[[int, float], None] | None,
            diagnostics: dict | None, log) -> str | None:
    """Pass one line of the worker's protocol on; return its error message, if it is one."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        message = None
    if not isinstance(message, dict):
        log.write(line)
        return None
    if "progress" in message:
        progress(*message["progress"])
    elif "report" in message and report is not None:
        report(*message["report"])
    elif "diagnostic" in message and diagnostics is not None:
        name, value = message["diagnostic"]
        diagnostics[name] = value
    return message.get("error")


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _write_cells(cells: ad.AnnData, path: Path) -> None:
    """Cells with their expression, ``condition`` and ``cell_type`` only (a view's rows copied once)."""
    obs = pd.DataFrame({"condition": cells.obs["condition"].astype(str).to_numpy(),
                        "cell_type": cells.obs["cell_type"].astype(str).to_numpy()},
                       index=cells.obs_names.astype(str))
    ad.AnnData(X=cells.X, obs=obs, var=pd.DataFrame(index=cells.var_names.astype(str))).write_h5ad(path)


def _prediction(path: Path, query: PredictQuery) -> Prediction:
    """The worker's predicted cells and their means per condition, checked against the query."""
    if not path.is_file():
        raise ModelError(f"the worker wrote no predictions ({path.name})")
    cells = ad.read_h5ad(path)
    if list(cells.var_names) != query.genes:
        raise ModelError("the worker predicted other genes than the query's, or in another order")
    conditions = cells.obs["condition"].astype(str).to_numpy()
    matrix = np.asarray(cells.X.toarray() if hasattr(cells.X, "toarray") else cells.X, dtype=np.float64)
    missing = [c for c in query.conditions if c not in set(conditions)]
    if missing:
        raise ModelError(f"the worker predicted no cells for condition '{missing[0]}'")
    means = pd.DataFrame(np.stack([matrix[conditions == c].mean(axis=0) for c in query.conditions]),
                         index=query.conditions, columns=query.genes)
    cells.obs["condition"] = conditions
    cells.obs["cell_type"] = query.cell_type
    return Prediction(means=means, cells=cells)
