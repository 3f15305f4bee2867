"""Device choice: ``auto`` decides without importing torch where no GPU driver is loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.core import devices
from bench.core.errors import BenchError

PROBE = "import sys; from bench.core import devices; print(devices.resolve('auto'), 'torch' in sys.modules)"


def test_auto_without_a_gpu_driver_is_the_cpu_and_leaves_torch_unimported():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    if devices._gpu_driver():
        assert out[1] == "True"  # a driver is loaded: torch is asked
    else:
        assert out == ["cpu", "False"]


def test_auto_asks_torch_once_it_is_loaded(monkeypatch):
    import torch

    monkeypatch.setattr(devices, "_gpu_driver", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve("auto") == "cuda"


def test_unknown_device_is_refused():
    with pytest.raises(BenchError, match="unknown device 'tpu'"):
        devices.resolve("tpu")
