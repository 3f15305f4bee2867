"""A model in its own environment (``kit.environment_adapter``): files in, files out, and the run's
progress, validation values, diagnostics, threads and seed carried across the process boundary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bench.adapters.kit.environment_adapter import EnvironmentAdapter
from bench.adapters.kit.params import Params, param
from bench.core.api import PredictQuery, TrainData
from bench.core.errors import ModelError
from bench.evaluation import splits

WORKER = Path(__file__).parent / "workers" / "mean_worker.py"


@dataclasses.dataclass(frozen=True)
class MeanParams(Params):
    shift: float = param(0.0)
    fail: bool = param(False)
    sleep: float = param(0.0)
    threads: int = param(0, "[0, inf)")


class MeanInEnvironment(EnvironmentAdapter):
    Params = MeanParams
    WORKER = WORKER
    name = "mean_in_environment"


@pytest.fixture
def split_data(small_synthetic):
    return splits.apply(splits.make(small_synthetic, "simulation", 1, "synthetic", "sha"), small_synthetic)


def model(cellflow_environment, **values) -> MeanInEnvironment:
    adapter = MeanInEnvironment(**values)
    adapter.requirements = cellflow_environment.requirements
    return adapter


def fitted(cellflow_environment, split_data, seed: int = 3, **values):
    adapter, seen = model(cellflow_environment, **values), {"progress": [], "report": []}
    train = TrainData(cells=split_data.train, val=split_data.val, seed=seed,
                      progress=lambda *a: seen["progress"].append(a), report=lambda *a: seen["report"].append(a))
    adapter.fit(train)
    return adapter, train, seen


def test_progress_reports_and_diagnostics_cross_from_the_worker(cellflow_environment, split_data):
    adapter, train, seen = fitted(cellflow_environment, split_data, threads=1)
    assert ("training", 3, 3) in seen["progress"]
    assert seen["report"] == [(1, -1.0), (2, -0.5), (3, -1.0 / 3)]
    assert train.diagnostics["threads"] == 1.0
    assert train.diagnostics["sees_bench"] == 0.0  # bench's own packages are not on the worker's path
    assert "a package's own chatter" in (adapter.folder / "worker.log").read_text()


def test_the_run_seed_seeds_the_worker(cellflow_environment, split_data):
    draws = [fitted(cellflow_environment, split_data, seed=s)[1].diagnostics["seed_draw"] for s in (3, 3, 4)]
    assert draws[0] == draws[1] != draws[2]


def test_predictions_come_back_as_means_and_cells_of_the_query(cellflow_environment, split_data):
    adapter, _, _ = fitted(cellflow_environment, split_data, shift=2.0)
    conditions = sorted(set(split_data.test.obs["condition"]))[:3]
    query = PredictQuery(conditions=conditions, control=split_data.query_control, cell_type="type_0", seed=1)
    prediction = adapter.predict(query)
    expected = np.asarray(split_data.train.X.mean(axis=0)).ravel() + 2.0
    assert list(prediction.means.index) == conditions
    assert list(prediction.means.columns) == query.genes
    np.testing.assert_allclose(prediction.means.to_numpy(), np.tile(expected, (3, 1)), rtol=1e-6)
    assert sorted(set(prediction.cells.obs["condition"])) == conditions


def test_a_failure_in_the_worker_is_one_line_naming_its_log(cellflow_environment, split_data):
    with pytest.raises(ModelError) as failure:
        fitted(cellflow_environment, split_data, fail=True)
    message = str(failure.value)
    assert "\n" not in message
    assert "RuntimeError: the model refused its data" in message
    assert "worker.log" in message
    log = Path(message.rsplit("(log: ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text()


def test_a_worker_without_the_task_says_so(cellflow_environment, split_data, tmp_path):
    (tmp_path / "no_tasks.py").write_text("import bench_worker\nbench_worker.main({})\n")
    adapter = model(cellflow_environment)
    adapter.WORKER = tmp_path / "no_tasks.py"
    with pytest.raises(ModelError, match="the worker script has no 'fit' task: bench_worker.main needs"):
        adapter.fit(TrainData(cells=split_data.train, val=split_data.val))


def test_a_card_without_an_environment_is_a_clear_error(split_data):
    with pytest.raises(ModelError, match="its card names none"):
        MeanInEnvironment().fit(TrainData(cells=split_data.train, val=split_data.val))


KILLED_PARENT = """
import sys, time
sys.path.insert(0, {tests!r})
from test_environment_adapter import MeanInEnvironment
from bench.core.api import TrainData
from bench.data.simulator import simulate
from bench.evaluation import splits
from pathlib import Path
data = simulate(n_cells=300, n_genes=20, n_modules=2, n_singles=4, n_doubles=2, seed=1)
parts = splits.apply(splits.make(data, "simulation", 1, "synthetic", "sha"), data)
model = MeanInEnvironment(sleep=600.0)
model.requirements = Path({requirements!r})
model.fit(TrainData(cells=parts.train, val=parts.val, progress=lambda *a: print(*a, flush=True)))
"""


def test_a_worker_ends_when_the_run_that_started_it_is_killed(cellflow_environment, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from bench.core.processes import alive

    code = KILLED_PARENT.format(tests=str(Path(__file__).parent), requirements=str(cellflow_environment.requirements))
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": str(tmp_path)})
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("bench-mean_in_environment-*/worker.pid")) and time.monotonic() < deadline:
        time.sleep(0.5)
    worker = int(next(tmp_path.glob("bench-mean_in_environment-*/worker.pid")).read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(20):
        if not alive(worker):
            break
        time.sleep(0.5)
    assert not alive(worker)
