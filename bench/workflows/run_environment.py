"""What a run ran on, beside its numeric profile (``numeric_env``: CPU model, kernel sets, BLAS builds,
thread counts of torch and of every BLAS/OpenMP pool): package versions, Python, the cores, the GPU."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

from bench.core.threads import usable_cores

# Distributions as their metadata names them: the harness, what models compute with, what scores and
# records runs.
PACKAGES = ("bench", "torch", "torch-geometric", "cell-gears", "numpy", "scipy", "pandas", "scikit-learn", "anndata",
            "scanpy", "h5py", "POT", "numba", "threadpoolctl", "optuna", "SQLAlchemy", "mlflow", "typer", "matplotlib",
            "cell-eval", "scouter-learn", "biolord", "scvi-tools")


def package_versions() -> dict[str, str]:
    """``{distribution: version}`` for ``PACKAGES``; ``absent`` for those not installed."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def describe(device: str) -> dict[str, str]:
    """Tags ``env.*`` of the process that runs on ``device``: Python, platform, cores (all, and those this
    process may use), and on a CUDA device the GPU's name and torch's CUDA version (torch is loaded then)."""
    table = {
        "env.python": platform.python_version(),
        "env.platform": platform.platform(),
        "env.cores": str(os.cpu_count() or 1),
        "env.usable_cores": str(usable_cores()),
    }
    torch = sys.modules.get("torch")
    if device.startswith("cuda") and torch is not None:
        table["env.gpu"] = torch.cuda.get_device_name(device)
        table["env.cuda"] = torch.version.cuda or "unknown"
    return table
