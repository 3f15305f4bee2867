"""Shared fixtures. Real data is reached only through the data store (``BENCH_DATA_DIR``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.core import paths


def real_data_file(name: str) -> Path:
    """A file from the data store; skip locally when absent, fail in CI (``CI`` set)."""
    path = paths.data_dir() / name
    if path.exists():
        return path
    needs(f"real data file {name} not in the data store {paths.data_dir()} (set BENCH_DATA_DIR)")


def needs(message: str) -> None:
    """A test needs something absent: skip locally with the reason, fail in CI (``CI`` set)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on the new folder ``folder`` for a block, unmounted after (``read_only``
    and ``fill`` make it read-only or full). Mounting needs root: elsewhere the test skips locally and
    fails in CI."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode:
        needs(f"cannot mount a tmpfs on {folder} ({mounted.stderr.strip()}); run the tests as root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def read_only(folder: Path) -> None:
    """Remount the tmpfs on ``folder`` read-only (``tmpfs``): writes there fail with EROFS, even as root."""
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` up to ``leave`` free bytes."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))


@pytest.fixture
def small_disk(tmp_path):
    """A folder on an 8 MiB tmpfs of its own (``tmpfs``): ``fill`` it to run it out of space."""
    with tmpfs(tmp_path / "disk", "8m") as folder:
        yield folder


# A whole `bench` process is waited for until it ends. Runs that take 1 to 2 minutes on a quiet machine took
# over 10 on one loaded by other work (load 8 on 2 cores); this bound only stops a hang.
HANG_S = 1800


def bench(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    """``bench *args`` as a user runs it: a whole process, with ``env`` added to the environment."""
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=HANG_S
    )


def failed_in_one_line(out: subprocess.CompletedProcess, says: str, code: int = 2) -> str:
    """Assert that a ``bench`` process failed with exit ``code`` and one ``error:`` line saying ``says`` (warnings
    aside), no traceback; return the line."""
    lines = [line for line in out.stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert out.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert says in lines[0] and "Traceback" not in out.stdout, out.stderr
    return lines[0]


def files_in(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder`` (hidden ones too) with its content (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def adapter_catalog(folder: Path, monkeypatch, module: str, source: str, cards: dict[str, str]) -> Path:
    """A catalog of test cards: ``source`` importable as ``module``, and per card name the adapter class
    it names (``Class``, or ``Class`` plus further TOML lines); the catalog becomes ``BENCH_CATALOG``."""
    (folder / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    home = folder / "home"
    (home / "models").mkdir(parents=True)
    for name, adapter in cards.items():
        cls, _, extra = adapter.partition("\n")
        (home / "models" / f"{name}.toml").write_text(
            f'name = "{name}"\nadapter = "{module}:{cls}"\ndescription = "test"\ncitation = "none"\n{extra}'
        )
    monkeypatch.setenv("BENCH_CATALOG", str(home))
    return home


@pytest.fixture
def workdir(tmp_path):
    """A working folder with its own MLflow store, for ``bench(*args, **workdir)``."""
    return {"cwd": tmp_path, "env": {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'runs.db'}", "COLUMNS": "200"}}


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """A temporary MLflow tracking store for runs logged in-process (``tracking.log_run``)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'runs.db'}")
    return tmp_path


@pytest.fixture(autouse=True)
def _isolated_user_folders(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache directory, so tests never read a stale user cache, and its own
    user card folder, so no test writes cards into the user's configuration."""
    if "BENCH_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "bench-cache"))
    monkeypatch.setenv("BENCH_CARDS_DIR", str(tmp_path_factory.getbasetemp() / "user-cards"))


@pytest.fixture(scope="session")
def norman_subset():
    """The real norman_subset dataset, loaded through the data store (canonical AnnData)."""
    real_data_file("perturbench_devel.h5ad")
    from bench.data.datasets import load_dataset

    return load_dataset("norman_subset")


@pytest.fixture(scope="session")
def small_synthetic():
    """A small simulated screen (a few hundred cells), canonical AnnData with ground truth in uns."""
    from bench.data.simulator import simulate

    return simulate(n_cells=900, n_genes=120, n_modules=6, n_singles=10, n_doubles=12, seed=7)


@pytest.fixture(scope="session")
def held_out_doubles(small_synthetic):
    """Train on controls, all singles and the other doubles; hold out the planted additive doubles whose
    genes both have a training single (ground truth read from the simulator, never through a model);
    query from half of the control cells. Returns ``(train, val, query, held, observed means)``."""
    import numpy as np

    from bench.core.conditions import CONTROL, genes_of

    interaction = small_synthetic.uns["simulation"]["interaction"]
    condition = small_synthetic.obs["condition"].astype(str).to_numpy()
    singles = {c for c in set(condition) if len(genes_of(c)) == 1}
    held = sorted(d for d, kind in interaction.items() if kind == "additive" and set(genes_of(d)) <= singles)
    controls = np.flatnonzero(condition == CONTROL)
    query = np.isin(np.arange(len(condition)), controls[::2])

    def cells(mask):
        subset = small_synthetic[mask].copy()
        subset.uns = {}
        return subset

    train = cells(~np.isin(condition, held) & ~query)
    observed = {d: np.asarray(small_synthetic.X[condition == d].mean(axis=0)).ravel() for d in held}
    return train, cells(np.zeros(len(condition), dtype=bool)), cells(query), held, observed


def held_out_error(model, data, seed: int = 1) -> float:
    """Mean squared error of ``model`` (fitted here) on the held-out doubles of ``held_out_doubles``."""
    import numpy as np

    from bench.core.api import PredictQuery, TrainData

    train, val, query, held, observed = data
    model.fit(TrainData(cells=train, val=val, seed=seed))
    means = model.predict(PredictQuery(held, query, "type_0", seed=seed)).means
    return float(np.mean([np.mean((means.loc[d].to_numpy() - observed[d]) ** 2) for d in held]))


@pytest.fixture(scope="session")
def cellflow_environment():
    """CellFlow's own environment (``bench/catalog/environments/cellflow.txt``), built on first use as a run
    builds it: minutes and about 1.6 GB the first time, then reused from ``BENCH_ENVS_DIR``."""
    from bench.adapters.kit.environment import ModelEnvironment

    environment = ModelEnvironment(paths.requirements_dir() / "cellflow.txt", "cellflow")
    environment.create()
    return environment


def run_in_cellflow_env(environment, script: Path, *args: Path) -> None:
    """Run a script of ``tests/cellflow_env`` (references computed with CellFlow, diffrax and JAX themselves)
    with the Python of CellFlow's environment, on one CPU thread."""
    from bench.adapters.kit.environment import isolated_environment

    variables = {**isolated_environment(), "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1",
                 "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    done = subprocess.run([str(environment.python), str(script), *map(str, args)], env=variables, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): two
    pytest-xdist workers on two cores, each with two OpenMP threads, slow small operations down many times
    over, and one thread makes two routes of a parity test sum in the same order."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
