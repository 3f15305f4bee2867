"""CellFlow's own velocity field, as scBIG's official release builds it, applied to given inputs.

Run with a Python that has cellflow-tools (never imported by pytest): ``python velocity_field.py IN OUT``.
``IN`` (.npz): the sizes ``latent_dim``, ``time_freqs``, ``time_dims``, ``hidden_dims``, ``decoder_dims``,
``condition_dim`` and ``key``; the inputs ``t`` (B,), ``x`` (B, latent_dim) and ``features`` (C, 2, F), each
condition's two perturbation slots (all-zero slot = masked). ``OUT`` (.npz): every parameter under its flax
path (``param/time_encoder/Dense_0/kernel``, ...), and per condition the embedding ``embedding`` (C, E) and the
velocity of the B cells ``velocity`` (C, B, latent_dim), all with ``train=False``.

The class is ``cellflow.networks.ConditionalVelocityField``, which the official ``CellFlow(solver='otfm')``
instantiates (vendored ``cellflow/model/_cellflow.py:51-56, 467-495``), with the arguments of the official
``prepare_model`` call (``scbig/experiments/train_norman_additive.py:2311-2324``) and its defaults
(``_cellflow.py:247-285``), except the widths, which are given. The vendored copy adds options (pathway
gates, a DE head) that this call leaves off; with them off its network is cellflow-tools 0.0.9's.

Flax initialises biases to zero; every parameter then gets a normal offset (std 0.1, numpy's generator
seeded with the same key) so that a bias or a kernel loaded into the wrong place changes the outputs.
"""

import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
from cellflow.networks import ConditionalVelocityField


def main(source: str, target: str) -> None:
    given = np.load(source)
    sizes = lambda name: tuple(int(v) for v in given[name])  # noqa: E731
    field = ConditionalVelocityField(
        output_dim=int(given["latent_dim"]), max_combination_length=2, condition_mode="deterministic",
        regularization=0.0, condition_embedding_dim=int(given["condition_dim"]), pooling="attention_seed",
        cond_output_dropout=0.9, time_freqs=int(given["time_freqs"]), time_max_period=10000,
        time_encoder_dims=sizes("time_dims"), time_encoder_dropout=0.0, hidden_dims=sizes("hidden_dims"),
        hidden_dropout=0.1, decoder_dims=sizes("decoder_dims"), decoder_dropout=0.1, conditioning="concatenation",
        layer_norm_before_concatenation=False, linear_projection_before_concatenation=False)
    t = jnp.asarray(given["t"], dtype=jnp.float32)[:, None]
    x = jnp.asarray(given["x"], dtype=jnp.float32)
    features = jnp.asarray(given["features"], dtype=jnp.float32)
    noise = jnp.zeros((1, int(given["condition_dim"])))
    key = jax.random.PRNGKey(int(given["key"]))
    init = jax.jit(lambda key: field.init({"params": key, "condition_encoder": key}, t=t, x_t=x,
                                          cond={"pert": features[:1]}, encoder_noise=noise, train=False))
    flat = flax.traverse_util.flatten_dict(init(key)["params"], sep="/")
    offsets = np.random.default_rng(int(given["key"]))
    flat = {name: np.asarray(value) + 0.1 * offsets.normal(size=value.shape).astype(np.float32)
            for name, value in flat.items()}
    params = flax.traverse_util.unflatten_dict(flat, sep="/")
    apply = jax.jit(lambda cond: field.apply({"params": params}, t, x, cond, noise, train=False)[0])
    embed = jax.jit(lambda cond: field.apply({"params": params}, cond, method="get_condition_embedding")[0])
    velocity, embedding = [], []
    for condition in features:
        velocity.append(np.asarray(apply({"pert": condition[None]})))
        embedding.append(np.asarray(embed({"pert": condition[None]})[0]))
    np.savez(target, velocity=np.stack(velocity), embedding=np.stack(embedding),
             **{f"param/{name}": value for name, value in flat.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
