"""Benchmarks run at Norman scale on the simulator (``synthetic_large``); run them explicitly with
``pytest benchmarks --benchmark-only``. The first run generates and caches the dataset."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def norman_scale():
    from bench.data.datasets import load_dataset

    return load_dataset("synthetic_large")
