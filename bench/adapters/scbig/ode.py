"""Adaptive Tsit5, as the official release solves the flow's ODE with diffrax.

Official (``cellflow/solvers/_otfm.py:378-402``, ``scbig/experiments/train_norman_additive.py:2437-2445``):
per cell (``jax.vmap``), ``diffrax.diffeqsolve(Tsit5(), t0=0, t1=1, dt0=None, PIDController(rtol=1e-5,
atol=1e-5))`` with diffrax's defaults: an I-controller (``pcoeff=0, icoeff=1``), safety 0.9, step factors
clipped to [0.2, 10] (to [1, 10] after an accepted step), the RMS error norm, ``max_steps=4096``. What
follows mirrors diffrax 0.6.1, the newest release that installs beside the official environment's
``jax==0.4.28`` (its ``environment.yml`` asks for ``diffrax>=0.5``; 0.6.2 needs jax 0.4.38):
``_solver/tsit5.py``, ``_step_size_controller/adaptive.py``, ``_integrate.py``.

- Tsitouras 5(4) (Tsitouras 2011), 7 stages, first-same-as-last: 6 evaluations per step;
- the scaled error ``RMS(y_err / (atol + rtol * max(|y_prev|, |y_new|)))``; a step is kept iff it is
  ``< 1``; the next step is ``dt * clip(0.9 * err^(-1/5), factormin, 10)`` with ``factormin = 1`` after a
  kept step and 0.2 after a rejected one, ``dt`` being the step just tried (error order 5 = the solver's
  order); a NaN error counts as infinite (a rejection by the factor 0.2);
- the first step is 0.01 (clipped to ``t1``), whatever the field: with ``dt0=None`` the controller's
  ``init`` asks ``_select_initial_step`` for Hairer's estimate, but that estimate runs only for a bare
  ``ODETerm`` and returns 0.01 otherwise (``adaptive.py:56-57``), and ``diffeqsolve`` has by then wrapped
  every term in a ``WrapTerm`` (``_integrate.py:1128-1137``, ``init`` at 1212, the clip at 1223); diffrax
  0.5.1 and 0.7.2 do the same (0.7.2: ``_step_size_controller/pid.py:48-49``, ``_integrate.py:1167-1176``);
- a proposal ending within 1e-6 (1e-10 in float64) of ``t1`` is clipped to ``t1`` after a kept step, and
  to the midpoint between the current time and ``t1`` after a rejected one (``_clip_to_end``; diffrax 0.7
  uses 100 ulps of ``t1`` instead);
- at most ``max_steps`` steps, kept and rejected together; more raise an error (``throw=True``).

Deviation (batches): y0 (B, ...) is solved as one system whose rows share every step. The error of a
step is the largest of the rows' RMS errors, so each row meets its own tolerance but may take more steps
than diffrax would give it alone. A batch of one row is diffrax's per-cell solve, step for step
(``tests/test_scbig_diffrax.py``).

Gradients flow through the accepted steps; the step-size control is detached, as diffrax stops the
gradient of the step factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# Tsitouras (2011) 5(4) tableau, the values of diffrax's ``_tsit5_tableau``.
C = (0.161, 0.327, 0.9, 0.98002554090450968572981028628702459549421379795630, 1.0, 1.0)
A = (
    (0.161,),
    (-0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943,
     0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569),
    (2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289,
     -6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366,
     4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077),
    (5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791,
     -11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589,
     7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753,
     -0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635),
    (5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748,
     -12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452,
     8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986,
     -0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835,
     -0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206),
)
# The solution weights (also the last stage's row: first-same-as-last) and the embedded 4th-order ones.
B = (0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396,
     0.01,
     0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
     1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
     -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
     2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841,
     0.0)
B_HAT = (0.09468075576583945807478876255758922856117527357724631226139574065785592789071067303271,
         0.009183565540343253096776363936645313759813746240984095238905939532922955247253608687270,
         0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813,
         1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761,
         -2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702,
         1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089,
         1 / 66)
E = tuple(b - b_hat for b, b_hat in zip(B, B_HAT))  # y_err = dt * sum(E_i k_i)

ORDER = 5  # diffrax's error order for Tsit5 on an ODE (``solver.order``)
SAFETY, FACTOR_MIN, FACTOR_MAX = 0.9, 0.2, 10.0


def _rms(x: torch.Tensor) -> torch.Tensor:
    """Per-row root mean square over everything but the first axis: (B, ...) -> (B,)."""
    return x.reshape(len(x), -1).pow(2).mean(dim=1).sqrt()


FIRST_STEP = 0.01  # diffrax's first step with dt0=None (see the module docstring)


def tsit5(f: Callable[[float, torch.Tensor], torch.Tensor], y0: torch.Tensor, t0: float = 0.0, t1: float = 1.0,
          rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 4096, stats: dict | None = None) -> torch.Tensor:
    """``y(t1)`` for ``dy/dt = f(t, y)``, ``y(t0) = y0`` (B, ...) or (d,) (one row), with ``t0 <= t1``.

    ``f`` takes a Python float time and a tensor shaped like ``y0``. ``stats``, if given, receives
    ``steps``, ``accepted``, ``rejected`` and ``times`` (the accepted steps' end times). Raises
    ``RuntimeError`` when ``t1`` is not reached within ``max_steps`` steps.
    """
    if y0.dim() == 1:
        return tsit5(lambda t, y: f(t, y[0])[None], y0[None], t0, t1, rtol, atol, max_steps, stats)[0]
    t0, t1 = float(t0), float(t1)
    if t1 < t0:
        raise ValueError(f"tsit5 integrates forwards only: t0 = {t0} > t1 = {t1}")
    end_tolerance = 1e-10 if y0.dtype == torch.float64 else 1e-6
    y, k_first = y0, f(t0, y0)
    tprev, tnext = t0, min(t0 + FIRST_STEP, t1)
    steps, times = 0, []
    while tprev < t1:
        if steps >= max_steps:
            raise RuntimeError(f"Tsit5 did not reach t1 = {t1} within max_steps = {max_steps} steps "
                               f"(at t = {tprev:.6g}, rtol = {rtol}, atol = {atol})")
        dt = tnext - tprev
        ks = [k_first]
        for c, row in zip(C, A + (B[:6],)):
            stage = y + dt * sum(a * k for a, k in zip(row, ks))
            ks.append(f(tprev + c * dt, stage))
        y_new = stage  # the last stage's input is the solution (its row is B)
        with torch.no_grad():
            y_err = torch.nan_to_num(dt * sum(e * k for e, k in zip(E, ks)), nan=torch.inf)
            candidate = torch.where(torch.isnan(y_new).flatten(1).any(1).view(-1, *[1] * (y.dim() - 1)),
                                    y, y_new)
            err = float(_rms(y_err / (atol + rtol * torch.maximum(y.abs(), candidate.abs()))).max())
        if math.isnan(err):
            err = math.inf
        keep = err < 1
        factor = SAFETY * err ** (-1.0 / ORDER) if err > 0 else float("inf")
        factor = min(max(factor, 1.0 if keep else FACTOR_MIN), FACTOR_MAX)
        steps += 1
        if keep:
            y, k_first, tprev = y_new, ks[-1], min(tnext, t1)
            times.append(tprev)
        tnext = tprev + dt * factor
        if tnext > t1 - end_tolerance:
            tnext = t1 if keep else tprev + 0.5 * (t1 - tprev)
    if stats is not None:
        stats.update(steps=steps, accepted=len(times), rejected=steps - len(times), times=times)
    return y
