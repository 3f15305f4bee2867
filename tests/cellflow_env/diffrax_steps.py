"""Solve a toy ODE with diffrax exactly as scBIG's official release calls it, one start point at a time.

Run with a Python that has jax and diffrax (never imported by pytest): ``python diffrax_steps.py IN OUT``.
``IN`` (.npz): a one-hidden-layer field ``v(t, y) = w2 @ tanh(w1 @ [y, t] + b1) + b2`` (``w1``, ``b1``,
``w2``, ``b2``), start points ``y0`` (n, d), ``rtol``, ``atol``, ``t0``, ``t1``. ``OUT`` (.npz): per row its
solution ``y1`` (n, d), the times of its accepted steps ``ts`` (n, max_steps, +inf after the last) and
``accepted`` / ``rejected`` step counts.

The call is the official one (``cellflow/solvers/_otfm.py:378-402``; ``scbig/experiments/
train_norman_additive.py:2437-2445``): ``diffeqsolve(ODETerm(f), Tsit5(), t0, t1, dt0=None, y0,
stepsize_controller=PIDController(rtol, atol))``, its solution ``ys[0]``. The accepted step times come from
a second, identical call with ``SaveAt(steps=True)``, which changes what is saved, not how it steps.
Float64 throughout (``jax_enable_x64``).
"""

import sys

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def main(source: str, target: str) -> None:
    given = np.load(source)
    w1, b1, w2, b2 = (jnp.asarray(given[name]) for name in ("w1", "b1", "w2", "b2"))
    rtol, atol, t0, t1 = (float(given[name]) for name in ("rtol", "atol", "t0", "t1"))

    def field(t, y, args):
        return w2 @ jnp.tanh(w1 @ jnp.append(y, t) + b1) + b2

    def solve(y0, saveat):
        return diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Tsit5(), t0=t0, t1=t1, dt0=None, y0=y0,
                                   stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), saveat=saveat)

    official = jax.jit(lambda y0: solve(y0, diffrax.SaveAt(t1=True)))
    stepped = jax.jit(lambda y0: solve(y0, diffrax.SaveAt(steps=True)))
    y1, ts, accepted, rejected = [], [], [], []
    for y0 in np.asarray(given["y0"]):
        result = official(jnp.asarray(y0))
        y1.append(np.asarray(result.ys[0]))
        ts.append(np.asarray(stepped(jnp.asarray(y0)).ts))
        accepted.append(int(result.stats["num_accepted_steps"]))
        rejected.append(int(result.stats["num_rejected_steps"]))
    np.savez(target, y1=np.stack(y1), ts=np.stack(ts), accepted=np.array(accepted), rejected=np.array(rejected),
             diffrax_version=diffrax.__version__)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
