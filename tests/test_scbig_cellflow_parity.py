"""scBIG's velocity field and condition encoder (``bench/adapters/scbig/flow.py``) against CellFlow's own
``ConditionalVelocityField`` (``tests/cellflow_env/velocity_field.py``, run in the CellFlow environment): the
same weights give the same condition embedding and the same velocity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_in_cellflow_env

from bench.adapters.scbig.flow import ConditionEncoder, VelocityField

SCRIPT = Path(__file__).parent / "cellflow_env" / "velocity_field.py"
SIZES = dict(latent_dim=6, time_freqs=32, time_dims=[24, 24], hidden_dims=[20, 20], decoder_dims=[28, 28],
             condition_dim=16)  # distinct widths, so that a layer loaded into the wrong place cannot fit
FEATURES = 10
HEADS, SEED_DIM = 8, 64  # CellFlow's SeedAttentionPooling defaults, which the official run keeps


def load_dense(layer: torch.nn.Linear, params: dict, name: str) -> None:
    """A flax ``Dense`` (kernel in x out) into a torch ``Linear`` (weight out x in)."""
    layer.weight.copy_(torch.from_numpy(params[f"param/{name}/kernel"]).T)
    layer.bias.copy_(torch.from_numpy(params[f"param/{name}/bias"]))


def load_mlp(block: torch.nn.Sequential, params: dict, name: str) -> None:
    """CellFlow's ``MLPBlock`` ``name`` (its ``Dense_i``) into our ``mlp`` (its i-th ``Linear``)."""
    linears = [m for m in block if isinstance(m, torch.nn.Linear)]
    assert len(linears) == sum(key.startswith(f"param/{name}/Dense_") for key in params) // 2
    for i, layer in enumerate(linears):
        load_dense(layer, params, f"{name}/Dense_{i}")


@torch.no_grad()
def ours_from(params: dict) -> tuple[ConditionEncoder, VelocityField]:
    """Our condition encoder and velocity field with CellFlow's weights (flax names -> our modules)."""
    encoder = ConditionEncoder(FEATURES, SIZES["condition_dim"], HEADS, SEED_DIM)
    pool = "condition_encoder/pool_module"
    encoder.pool.seed.copy_(torch.from_numpy(params[f"param/{pool}/S"]).reshape(1, SEED_DIM))
    for layer, dense in ((encoder.pool.query, "Dense_0"), (encoder.pool.key, "Dense_1"),
                         (encoder.pool.value, "Dense_2")):
        load_dense(layer, params, f"{pool}/{dense}")
    load_dense(encoder.output, params, "condition_encoder/after_pool_modules_mean_0")
    field = VelocityField(SIZES["latent_dim"], SIZES["condition_dim"], SIZES["time_freqs"], SIZES["time_dims"],
                          SIZES["hidden_dims"], SIZES["decoder_dims"])
    load_mlp(field.time, params, "time_encoder")
    load_mlp(field.x, params, "x_encoder")
    load_mlp(field.decoder, params, "decoder")
    load_dense(field.output, params, "output_layer")
    return encoder.eval(), field.eval()


@pytest.mark.slow  # ~20 s of CPU: importing cellflow (scanpy, anndata, ott) takes 9 s, jax's compiles most of the rest
def test_cellflow_weights_give_our_embedding_and_velocity(cellflow_environment, tmp_path):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(3, 2, FEATURES)).astype(np.float32)
    features[1, 1] = 0.0  # a single perturbation: slot 2 masked
    features[2, 0] = 0.0  # a first slot without features: every key masked, uniform attention (flow.py)
    t = np.array([0.0, 0.13, 0.5, 0.77, 1.0], dtype=np.float32)
    x = rng.normal(size=(5, SIZES["latent_dim"])).astype(np.float32)
    np.savez(tmp_path / "in.npz", **SIZES, key=11, t=t, x=x, features=features)
    run_in_cellflow_env(cellflow_environment, SCRIPT, tmp_path / "in.npz", tmp_path / "out.npz")
    official = dict(np.load(tmp_path / "out.npz"))
    encoder, field = ours_from(official)
    with torch.no_grad():
        embedding = encoder(torch.from_numpy(features))
        velocity = torch.stack([field(torch.from_numpy(x), torch.from_numpy(t), embedding[c:c + 1])
                                for c in range(len(features))])
    np.testing.assert_allclose(embedding.numpy(), official["embedding"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(velocity.numpy(), official["velocity"], rtol=0, atol=1e-5)
    assert np.abs(official["velocity"]).max() > 0.1  # the outputs are not trivially small
