"""scBIG's flow-matching training throughput (optimiser steps per second), default card sizes.

Three measurements in one process, each 100 steps of batch 256 on a 50-d latent with 20 conditions of
300 cells and 500 genes, on the available device (CUDA when present, else CPU):

- ``reference``: the velocity MLP alone (2 x 1024) on random inputs, the floor of a flow step;
- ``flow``: scBIG's step (OT coupling, condition encoder, constant-noise path), no structure losses;
- ``flow_structure``: the same with the structure losses every 10 steps (ODE solve, decode, Sinkhorn).

``extra_info`` holds steps per second and the ratio of each to the reference.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from bench.adapters.scbig.encoder import PCALatent
from bench.adapters.scbig.flow import ConditionalFlow, VelocityField
from bench.adapters.scbig.latent import LatentSpace
from bench.adapters.scbig.structure import membership
from bench.adapters.scbig.training import FlowData, FlowSettings, Group, Structure, StructureSettings, train_flow

STEPS, BATCH, LATENT, GENES, CONDITIONS, CELLS = 100, 256, 50, 500, 20, 300
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


class Features:
    """Fixed random gene features (the benchmark needs no Gene Ontology)."""

    dim = 16

    def lookup(self, genes):
        return np.stack([np.random.default_rng(abs(hash(g)) % 2**32).normal(size=self.dim) for g in genes])


def settings() -> FlowSettings:
    return FlowSettings(calls=STEPS, accumulation=1, batch_size=BATCH, learning_rate=5e-4, eval_every=STEPS)


def alignment(structure: bool) -> StructureSettings:
    weight = 0.1 if structure else 0.0
    return StructureSettings(every=10, conditions=5, cells=128, learning_rate=5e-4, correlation_weight=weight,
                             pathway_weight=weight)


def flow_setup(structure: bool):
    rng = np.random.default_rng(0)
    x = rng.gamma(1.0, 1.0, size=((CONDITIONS + 1) * CELLS, GENES)).astype(np.float32)
    latent = LatentSpace(PCALatent(x.astype(np.float64), LATENT).to(DEVICE), DEVICE)
    groups = [Group("k562", f"G{i}", np.arange((i + 1) * CELLS, (i + 2) * CELLS)) for i in range(CONDITIONS)]
    data = FlowData(latent.encode(x), x, groups, {"k562": np.arange(CELLS)})
    clusters = membership([np.arange(i, GENES, 32) for i in range(32)], GENES, DEVICE)
    pathways = membership([rng.choice(GENES, 20, replace=False) for _ in range(64)], GENES, DEVICE)
    flow = ConditionalFlow(Features(), ["k562"], LATENT).to(DEVICE)
    return flow, latent, data, Structure(clusters, pathways, alignment(structure))


def steps_per_second(structure: bool) -> float:
    flow, latent, data, parts = flow_setup(structure)
    start = time.perf_counter()
    train_flow(flow, latent, data, parts, [], settings(), np.random.default_rng(0), lambda s, v: None, DEVICE)
    return STEPS / (time.perf_counter() - start)


def reference_steps_per_second() -> float:
    net = VelocityField(LATENT, 256).to(DEVICE)
    optimiser = torch.optim.Adam(net.parameters(), lr=5e-4)
    x, c, target = (torch.randn(BATCH, d, device=DEVICE) for d in (LATENT, 256, LATENT))
    start = time.perf_counter()
    for _ in range(STEPS):
        loss = ((net(x, torch.rand(BATCH, device=DEVICE), c) - target) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return STEPS / (time.perf_counter() - start)


@pytest.mark.parametrize("variant", ["reference", "flow", "flow_structure"])
def test_flow_matching_throughput(benchmark, variant):
    measure = {"reference": reference_steps_per_second, "flow": lambda: steps_per_second(False),
               "flow_structure": lambda: steps_per_second(True)}[variant]
    rates = benchmark.pedantic(lambda: [measure(), reference_steps_per_second()], rounds=3, iterations=1)
    rate, reference = rates
    benchmark.extra_info.update(device=DEVICE, steps_per_s=round(rate, 1), reference_steps_per_s=round(reference, 1),
                                ratio_to_reference=round(rate / reference, 3))
    assert rate > 0
