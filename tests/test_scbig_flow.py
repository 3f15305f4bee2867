"""scBIG's generator pieces against the official release's semantics (CellFlow / ott-jax / diffrax): the
velocity field, the seed-attention condition encoder, the Sinkhorn coupling and adaptive Tsit5."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from scipy import stats
from torch import nn

from bench.adapters.scbig import coupling, ode
from bench.adapters.scbig.flow import (
    ConditionalFlow,
    ConditionEncoder,
    SeedAttentionPooling,
    VelocityField,
    dense,
    mlp,
    path_loss,
    time_encoding,
    transport,
)

# --- time code, MLP, velocity field -----------------------------------------------------------------------------

def test_time_encoding_is_1024_wide_from_512_frequencies():
    code = time_encoding(torch.tensor([0.0, 0.5]))
    assert code.shape == (2, 1024)
    assert torch.equal(code[0, :512], torch.ones(512)) and torch.equal(code[0, 512:], torch.zeros(512))
    angle = 0.5 * 10000 * 10000 ** (-1 / 512)  # frequency i = 1 of 512
    assert code[1, 1].item() == pytest.approx(math.cos(angle), abs=1e-3)
    assert code[1, 513].item() == pytest.approx(math.sin(angle), abs=1e-3)


def test_time_encoding_small_width_by_hand():
    # width 8: 4 frequencies 10000^(-i/4) = 10^-i, angles 0.3 * 10000 * 10^-i
    code = time_encoding(torch.tensor([0.3], dtype=torch.float64), width=8)
    angles = np.array([3000.0, 300.0, 30.0, 3.0])
    np.testing.assert_allclose(code[0].numpy(), np.concatenate([np.cos(angles), np.sin(angles)]), atol=1e-9)


def test_mlp_layout_follows_cellflow_mlpblock():
    kinds = lambda block: [(type(m).__name__, getattr(m, "p", None)) for m in block]  # noqa: E731
    assert kinds(mlp(3, (4, 5), 0.1, act_last=True)) == [
        ("Linear", None), ("SiLU", None), ("Dropout", 0.1), ("Linear", None), ("SiLU", None), ("Dropout", 0.1)]
    # no activation after the last layer, but its dropout stays (NU:110-112)
    assert kinds(mlp(3, (4, 5), 0.0, act_last=False)) == [
        ("Linear", None), ("SiLU", None), ("Dropout", 0.0), ("Linear", None), ("Dropout", 0.0)]
    assert len(mlp(3, (), 0.1, act_last=True)) == 0


def test_dense_is_flax_lecun_normal():
    torch.manual_seed(0)
    layer = dense(256, 4096)
    std = 1 / math.sqrt(256)
    assert layer.weight.std().item() == pytest.approx(std, rel=0.02)
    assert layer.weight.abs().max().item() <= 2 * std / 0.87962566103423978 + 1e-7
    assert torch.equal(layer.bias, torch.zeros(4096))


def _field(**kw) -> VelocityField:
    return VelocityField(latent_dim=6, condition_dim=5, time_width=16, time_dims=(8, 7), x_dims=(9, 10),
                         decoder_dims=(11, 12), **kw)


def test_velocity_field_shapes():
    field = _field()
    assert field.decoder[0].in_features == 7 + 10 + 5  # concat[t, x, condition]
    assert field.time[0].in_features == 16 and field.x[0].in_features == 6
    assert field.output.in_features == 12 and field.output.out_features == 6
    out = field(torch.randn(4, 6), torch.rand(4), torch.randn(1, 5))
    assert out.shape == (4, 6)


def test_condition_dropout_only_when_asked():
    torch.manual_seed(0)
    field = _field(condition_dropout=1.0).eval()  # rate 1: the whole condition is dropped
    x, t, c = torch.randn(3, 6), torch.rand(3), torch.randn(1, 5)
    plain = field(x, t, c)
    assert torch.equal(field(x, t, c), plain)
    assert torch.allclose(field(x, t, c, condition_dropout=True), field(x, t, torch.zeros(1, 5)))
    assert not torch.allclose(field(x, t, c, condition_dropout=True), plain)


def test_condition_dropout_mask_is_shared_by_the_batch():
    torch.manual_seed(0)
    field = _field(condition_dropout=0.5).eval()
    x, t = torch.randn(1, 6).expand(64, -1), torch.full((64,), 0.3)
    out = field(x, t, torch.randn(1, 5), condition_dropout=True)
    assert torch.allclose(out, out[:1].expand(64, -1))


def test_path_loss_uses_the_condition_dropout():
    class Zero(nn.Module):
        calls = []

        def forward(self, x, t, condition, condition_dropout=False):
            self.calls.append(condition_dropout)
            return torch.zeros_like(x)

    x0, x1 = torch.randn(5, 3), torch.randn(5, 3)
    loss = path_loss(Zero(), x0, x1, torch.randn(1, 2))
    assert loss.item() == pytest.approx(((x1 - x0) ** 2).mean().item())
    assert Zero.calls == [True]


# --- condition encoder --------------------------------------------------------------------------------------------

def test_seed_pooling_scales_by_sqrt_of_the_full_width():
    pool = SeedAttentionPooling(input_dim=4, heads=2, dim=4)
    with torch.no_grad():
        pool.seed.copy_(torch.tensor([[1.0, 2.0, 0.0, 1.0]]))
        for layer in (pool.query, pool.key, pool.value):
            layer.weight.copy_(torch.eye(4))
            layer.bias.zero_()
    x = torch.tensor([[[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 2.0, 0.0]]])
    out = pool(x, torch.ones(1, 2, dtype=torch.bool))[0]
    # head 0: q (1, 2), keys (1, 0), (0, 1): logits (1, 2) / sqrt(4); head 1: q (0, 1), keys (1, 1), (2, 0)
    w0 = np.exp([0.5, 1.0]) / np.exp([0.5, 1.0]).sum()
    w1 = np.exp([0.5, 0.0]) / np.exp([0.5, 0.0]).sum()
    expected = [w0[0], w0[1], w1[0] * 1 + w1[1] * 2, w1[0] * 1 + w1[1] * 0]
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-6)


def test_masked_slots_are_ignored_and_slot_order_does_not_matter():
    torch.manual_seed(0)
    encoder = ConditionEncoder(feature_dim=6, condition_dim=5, heads=2, seed_dim=4)
    a, b, zero = torch.randn(6), torch.randn(6), torch.zeros(6)
    encode = lambda *slots: encoder(torch.stack(slots)[None])[0]  # noqa: E731
    assert torch.allclose(encode(a, zero), encode(a), atol=1e-6)
    assert torch.allclose(encode(a, b), encode(b, a), atol=1e-6)
    assert not torch.allclose(encode(a, b), encode(a), atol=1e-3)


def test_masked_first_slot_masks_every_key_as_official():
    # row 0 of mask & mask^T: with slot 0 empty all keys are masked and the softmax is uniform
    torch.manual_seed(0)
    pool = SeedAttentionPooling(input_dim=6, heads=2, dim=4)
    a = torch.randn(6)
    x = torch.stack([torch.zeros(6), a])[None]
    out = pool(x, torch.tensor([[False, True]]))[0]
    expected = (pool.value(torch.zeros(6)) + pool.value(a)) / 2
    assert torch.allclose(out, expected, atol=1e-6)


def test_cell_type_one_hot_unmasks_empty_slots_and_unseen_types_add_nothing():
    torch.manual_seed(0)
    encoder = ConditionEncoder(feature_dim=6, condition_dim=5, heads=2, seed_dim=4, n_cell_types=2)
    assert encoder.pool.key.in_features == 8
    a = torch.randn(6)
    padded, alone = torch.stack([a, torch.zeros(6)])[None], a[None, None]
    seen = torch.tensor([1])
    assert not torch.allclose(encoder(padded, seen), encoder(alone, seen), atol=1e-4)
    by_hand = encoder.output(encoder.pool(torch.cat([padded, torch.tensor([0.0, 1.0]).expand(1, 2, 2)], 2),
                                          torch.ones(1, 2, dtype=torch.bool)))
    assert torch.allclose(encoder(padded, seen), by_hand, atol=1e-6)
    unseen = torch.tensor([2])
    assert torch.allclose(encoder(padded, unseen), encoder(alone, unseen), atol=1e-6)


class _Features:
    dim = 3
    table = {"A": [1.0, 0.5, -1.0], "B": [0.2, -0.3, 2.0], "Z": [0.0, 0.0, 0.0]}

    def lookup(self, genes):
        return np.array([self.table[g] for g in genes], dtype=np.float32)


def test_conditional_flow_condition_slots():
    torch.manual_seed(0)
    flow = ConditionalFlow(_Features(), ["K562"], latent_dim=4, condition_dim=5, seed_dim=4, heads=2,
                           time_width=8, time_dims=(8,), x_dims=(8,), decoder_dims=(8,))
    single = flow.condition("A", "K562")
    assert single.shape == (1, 5)
    alone = flow.encoder(torch.tensor([[_Features.table["A"]]]))
    assert torch.allclose(single, alone, atol=1e-6)
    assert torch.allclose(flow.condition("A+Z", "K562"), single, atol=1e-6)  # featureless gene: masked
    assert not torch.allclose(flow.condition("A+B", "K562"), single, atol=1e-4)


def test_transport_integrates_the_field_from_0_to_1():
    seen = []

    def velocity(x, t, condition, condition_dropout=False):
        seen.append((t.shape, condition_dropout))
        return t[:, None] * condition.expand(len(x), -1)  # dx/dt = t c: x(1) = x0 + c / 2

    x0, c = torch.randn(3, 2, dtype=torch.float64), torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    assert torch.allclose(transport(velocity, x0, c), x0 + c / 2, atol=1e-8)
    assert set(seen) == {((3,), False)}


# --- coupling -------------------------------------------------------------------------------------------------------

def test_sinkhorn_plan_marginals():
    generator = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(40, 5, generator=generator), torch.randn(30, 5, generator=generator) + 1
    plan = coupling.sinkhorn_plan(x0, x1)
    assert plan.shape == (40, 30)
    assert torch.allclose(plan.sum(1), torch.full((40,), 1 / 40), atol=1e-6)  # f is updated last
    assert (plan.sum(0) - 1 / 30).abs().sum().item() < 1e-3
    slow = coupling.sinkhorn_plan(x0, x1, epsilon=0.02)  # needs more than the first 10 iterations
    assert (slow.sum(0) - 1 / 30).abs().sum().item() < 1e-3


def test_sinkhorn_rows_are_exact_after_each_iteration():
    generator = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(20, 3, generator=generator), torch.randn(25, 3, generator=generator) * 3
    plan = coupling.sinkhorn_plan(x0, x1, epsilon=0.01, max_iterations=3)
    assert torch.allclose(plan.sum(1), torch.full((20,), 1 / 20), atol=1e-6)
    assert (plan.sum(0) - 1 / 25).abs().sum().item() > 1e-3  # not converged: the columns are not


def test_sinkhorn_plan_matches_pot_on_the_mean_scaled_cost():
    generator = torch.Generator().manual_seed(2)
    x0 = torch.randn(12, 4, generator=generator, dtype=torch.float64)
    x1 = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    plan = coupling.sinkhorn_plan(x0, x1, epsilon=1.0, threshold=1e-12, max_iterations=10000)
    cost = ot.dist(x0.numpy(), x1.numpy())
    reference = ot.sinkhorn(np.full(12, 1 / 12), np.full(9, 1 / 9), cost / cost.mean(), reg=1.0,
                            method="sinkhorn_log", stopThr=1e-14, numItermax=10000)
    np.testing.assert_allclose(plan.numpy(), reference, atol=1e-10)


def test_sinkhorn_with_tiny_epsilon_is_the_exact_ot_permutation():
    generator = torch.Generator().manual_seed(3)
    x0 = 3 * torch.randn(6, 5, generator=generator, dtype=torch.float64)
    x1 = x0[torch.tensor([3, 0, 5, 1, 4, 2])] + 0.1 * torch.randn(6, 5, generator=generator, dtype=torch.float64)
    plan = coupling.sinkhorn_plan(x0, x1, epsilon=1e-3, threshold=1e-9, max_iterations=20000)
    uniform = np.full(6, 1 / 6)
    exact = ot.emd(uniform, uniform, ot.dist(x0.numpy(), x1.numpy()))
    np.testing.assert_allclose(plan.numpy(), exact, atol=1e-4)


def test_sinkhorn_cost_is_mean_scaled():
    generator = torch.Generator().manual_seed(4)
    x0, x1 = torch.randn(15, 3, generator=generator), torch.randn(10, 3, generator=generator)
    plan = coupling.sinkhorn_plan(x0, x1, threshold=1e-6)
    assert torch.allclose(coupling.sinkhorn_plan(7 * x0, 7 * x1, threshold=1e-6), plan, atol=1e-6)


def test_sampled_pairs_follow_the_plan():
    plan = torch.tensor([[0.10, 0.00, 0.20, 0.05], [0.05, 0.30, 0.00, 0.10], [0.00, 0.05, 0.10, 0.05]])
    rows, cols = coupling.sample_pairs(plan, 20000, torch.Generator().manual_seed(0))
    counts = np.zeros((3, 4))
    np.add.at(counts, (rows.numpy(), cols.numpy()), 1)
    assert counts[plan.numpy() == 0].sum() == 0
    support = plan.numpy() > 0
    assert stats.chisquare(counts[support], 20000 * plan.numpy()[support]).pvalue > 1e-3
    one = torch.zeros(3, 4)
    one[1, 2] = 1.0
    rows, cols = coupling.sample_pairs(one, 5)
    assert rows.tolist() == [1] * 5 and cols.tolist() == [2] * 5


# --- Tsit5 ----------------------------------------------------------------------------------------------------------

def test_tsit5_tableau_order_conditions():
    a = [row + (0.0,) * (6 - len(row)) for row in ode.A] + [ode.B[:6]]
    for c, row in zip(ode.C, a):
        assert sum(row) == pytest.approx(c, abs=1e-13)  # row sums are the nodes
    nodes = (0.0,) + ode.C
    for q in range(1, 6):  # quadrature conditions up to order 5 (solution) and 4 (embedded)
        assert sum(b * c ** (q - 1) for b, c in zip(ode.B, nodes)) == pytest.approx(1 / q, abs=1e-13)
        if q <= 4:
            assert sum(b * c ** (q - 1) for b, c in zip(ode.B_HAT, nodes)) == pytest.approx(1 / q, abs=1e-13)
    assert sum(ode.E) == pytest.approx(0.0, abs=1e-14) and ode.E[6] == pytest.approx(-1 / 66)


def test_tsit5_exponential_growth():
    y = ode.tsit5(lambda t, y: y, torch.ones(1, 1))
    assert y.item() == pytest.approx(math.e, rel=1e-4)
    y64 = ode.tsit5(lambda t, y: y, torch.ones(1, 1, dtype=torch.float64), rtol=1e-10, atol=1e-10)
    assert y64.item() == pytest.approx(math.e, rel=1e-8)


def _counted(f):
    calls = []

    def wrapped(t, y):
        calls.append(t)
        return f(t, y)

    return wrapped, calls


def test_tsit5_steps_by_hand_on_a_constant_field():
    # y' = 1, y0 = 0: diffrax's first step 0.01 (ode.py's docstring); zero error estimates grow each step by the
    # maximal factor 10: 0.01, 0.1, then 1.0 clipped to t1.
    f, calls = _counted(lambda t, y: torch.ones_like(y))
    stats_ = {}
    y = ode.tsit5(f, torch.zeros(1, 1, dtype=torch.float64), stats=stats_)
    assert y.item() == pytest.approx(1.0, abs=1e-12)
    assert stats_ == {"steps": 3, "accepted": 3, "rejected": 0, "times": [0.01, 0.11, 1.0]}
    assert len(calls) == 1 + 6 * 3  # f(t0), then 6 per step (first same as last)
    np.testing.assert_allclose(calls[1:][5::6], [0.01, 0.11, 1.0], rtol=1e-12)


def test_tsit5_first_step_is_diffraxs_0_01_whatever_the_field():
    # diffrax skips Hairer's estimate for the wrapped terms diffeqsolve hands its controller: the first step is
    # 0.01 for a slow and a fast field alike (Hairer's would be 0.046 and 0.001), and at most t1 - t0
    for rate in (1.0, 1000.0):
        f, calls = _counted(lambda t, y, rate=rate: -rate * y)
        ode.tsit5(f, torch.ones(1, 1, dtype=torch.float64), max_steps=10_000)
        assert calls[6] == pytest.approx(0.01, abs=1e-15)  # the first step's last stage, at t0 + dt0
    f, calls = _counted(lambda t, y: y)
    stats_ = {}
    ode.tsit5(f, torch.ones(1, 1, dtype=torch.float64), t0=0.5, t1=0.504, stats=stats_)
    assert stats_["times"] == [0.504] and calls[6] == 0.504


def _linear_step(z: float) -> tuple[float, float]:
    """One Tsit5 step of y' = y from y = 1 with step z, by linear algebra on the tableau: the solution
    R(z) = 1 + z b^T (I - z A)^-1 1 and the error estimate z e^T (I - z A)^-1 1."""
    a = np.zeros((7, 7))
    for i, row in enumerate(ode.A + (ode.B[:6],)):
        a[i + 1, : len(row)] = row
    stages = np.linalg.solve(np.eye(7) - z * a, np.ones(7))
    return 1 + z * np.array(ode.B) @ stages, z * np.array(ode.E) @ stages


def test_tsit5_step_control_by_hand():
    # y' = y to t1 = 3 (rtol = atol = 1e-5): the first step 0.01 has a tiny scaled error (factor 10); step 2's
    # is err = |E| / (atol + rtol max(|y1|, |y2|)), and the next step is dt * 0.9 err^(-1/5)
    f, calls = _counted(lambda t, y: y)
    ode.tsit5(f, torch.ones(1, 1, dtype=torch.float64), t1=3.0)
    dt0 = 0.01
    y1, first_error = _linear_step(dt0)
    assert 0.9 * (abs(first_error) / (1e-5 + 1e-5 * y1)) ** -0.2 > 10
    growth, error = _linear_step(10 * dt0)
    err = abs(error) * y1 / (1e-5 + 1e-5 * max(y1, growth * y1))
    assert 0.9 ** 5 / 10 ** 5 < err < 1  # accepted, with a factor inside (1, 10)
    np.testing.assert_allclose(calls[6:19:6], [dt0, 11 * dt0, 11 * dt0 + 10 * dt0 * 0.9 * err ** -0.2],
                               rtol=1e-9)


def test_tsit5_adapts_to_the_tolerance():
    k = 50.0
    loose, loose_calls = _counted(lambda t, y: -k * y)
    tight, tight_calls = _counted(lambda t, y: -k * y)
    y0 = torch.ones(1, 1, dtype=torch.float64)
    y_loose = ode.tsit5(loose, y0, rtol=1e-3, atol=1e-3)
    y_tight = ode.tsit5(tight, y0, rtol=1e-9, atol=1e-9)
    assert len(loose_calls) < len(tight_calls) / 3
    assert abs(y_loose.item() - math.exp(-k)) < 1e-2
    assert abs(y_tight.item() - math.exp(-k)) < 1e-8


def test_tsit5_batch_shares_steps_by_the_largest_error():
    rates = torch.tensor([[1.0], [30.0]], dtype=torch.float64)
    evals = {}
    for name, rate in (("easy", 1.0), ("hard", 30.0)):
        f, calls = _counted(lambda t, y, rate=rate: -rate * y)
        ode.tsit5(f, torch.ones(1, 1, dtype=torch.float64), rtol=1e-6, atol=1e-6)
        evals[name] = len(calls)
    f, calls = _counted(lambda t, y: -rates * y)
    y = ode.tsit5(f, torch.ones(2, 1, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y[:, 0].numpy(), np.exp([-1.0, -30.0]), atol=1e-5)
    assert evals["easy"] < evals["hard"] <= len(calls)
    # identical rows take exactly the single row's steps
    single = ode.tsit5(lambda t, y: torch.sin(y) + t, torch.full((1, 3), 0.5))
    double = ode.tsit5(lambda t, y: torch.sin(y) + t, torch.full((2, 3), 0.5))
    assert torch.equal(double, single.expand(2, -1))


def test_tsit5_gradient_matches_the_analytic_derivative():
    y0 = torch.ones(1, 1, dtype=torch.float64, requires_grad=True)
    rate = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    y1 = ode.tsit5(lambda t, y: rate * y, y0, rtol=1e-8, atol=1e-8)
    y1.sum().backward()
    assert y0.grad.item() == pytest.approx(math.e, rel=1e-6)  # d y1 / d y0 = e^rate
    assert rate.grad.item() == pytest.approx(math.e, rel=1e-6)  # d y1 / d rate = t e^rate y0 at t = 1


def test_tsit5_max_steps():
    with pytest.raises(RuntimeError, match="max_steps"):
        ode.tsit5(lambda t, y: -1000 * y, torch.ones(2, 2), rtol=1e-8, atol=1e-8, max_steps=5)
