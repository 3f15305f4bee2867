"""The numeric environment of a run, and the pinned profile that makes ``bench check`` CPU-independent.

Floating-point results move with the CPU: torch (ATen) and numpy pick SIMD kernels by instruction set,
MKL and OpenBLAS pick code paths by CPU model, and thread counts change the order of reductions. On a
deterministic model that is rounding noise; on a model with early stopping it can move a score by 0.1
(cpa's fast preset on norman_subset seed 1: 0.228 with AVX-512 ATen kernels, 0.130 with
``ATEN_CPU_CAPABILITY=default``). Every run records where it ran (``describe``); ``bench check`` runs
its configurations in worker processes under the pinned profile (``profile_environment``): the code
paths of any x86-64 CPU with AVX2 and FMA, on one thread, so its values do not depend on which such
CPU runs it.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from functools import cache

PROFILE_NAME = "x86-64-v3, 1 thread"
# Environment variables that choose numeric code paths or thread counts; read at library load time.
VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE",
             "OPENBLAS_L2_SIZE", "NPY_DISABLE_CPU_FEATURES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "OPENBLAS_NUM_THREADS")


def profile_environment() -> dict[str, str]:
    """The variables of the pinned profile: AVX2 kernels in ATen, MKL (conditional numerical
    reproducibility), oneDNN, OpenBLAS and numpy, and one thread everywhere."""
    return {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
        "OPENBLAS_L2_SIZE": "512",  # OpenBLAS sizes its blocks (so the order of its sums) by the L2 cache
        "NPY_DISABLE_CPU_FEATURES": " ".join(_numpy_targets_above_avx2()),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }


def _numpy_targets_above_avx2() -> list[str]:
    """numpy's dispatch targets beyond AVX2 (their names change between numpy releases)."""
    import numpy as np

    simd = np.show_config(mode="dicts")["SIMD Extensions"]
    return [target for target in (*simd["found"], *simd["not found"]) if "AVX512" in target or target == "X86_V4"]


@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            match = re.search(r"^model name\s*:\s*(.+)$", handle.read(), re.MULTILINE)
    except OSError:
        match = None
    return match[1].strip() if match else platform.processor() or platform.machine()


def cpu_supports_profile() -> bool:
    """Whether this CPU runs the profile's code paths (x86-64 with AVX2 and FMA)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = re.search(r"^flags\s*:(.*)$", handle.read(), re.MULTILINE)
    except OSError:
        return False
    return bool(flags) and {"avx2", "fma"} <= set(flags[1].split())


def _blas() -> str:
    from threadpoolctl import threadpool_info

    parts = []
    if "torch" in sys.modules:
        import torch

        mkl = re.search(r"Math Kernel Library Version ([\w.]+)", torch.__config__.show())
        parts.append(f"torch: {'MKL ' + mkl[1] if mkl else 'no MKL'}")
    for pool in threadpool_info():
        if pool["user_api"] == "blas":
            parts.append(f"{pool['internal_api']} {pool['version']} ({pool.get('architecture') or '?'})")
    return "; ".join(parts)


def _threads() -> str:
    from threadpoolctl import threadpool_info

    parts = []
    if "torch" in sys.modules:
        import torch

        parts.append(f"torch {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op")
    parts += [f"{pool['internal_api']} {pool['num_threads']}" for pool in threadpool_info()]
    return "; ".join(parts)


def describe() -> dict[str, str]:
    """Tags naming where a run's numbers came from: CPU, kernel sets, BLAS builds, threads, variables."""
    import numpy as np

    disabled = set(os.environ.get("NPY_DISABLE_CPU_FEATURES", "").split())
    found = np.show_config(mode="dicts")["SIMD Extensions"]["found"]
    kernels = "numpy " + " ".join(target for target in found if target not in disabled)
    if "torch" in sys.modules:
        import torch

        kernels = f"ATen {torch.backends.cpu.get_cpu_capability()}; {kernels}"
    settings = " ".join(f"{name}={os.environ[name]}" for name in VARIABLES if name in os.environ)
    return {
        "numeric.cpu": cpu_model(),
        "numeric.kernels": kernels,
        "numeric.blas": _blas(),
        "numeric.threads": _threads(),
        "numeric.variables": settings or "none",
    }
