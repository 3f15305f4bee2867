"""scBIG's GCAE (architecture as the official release) and its pre-training (schedule, validation cells)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from bench.adapters.scbig import pretrain as pretrain_module
from bench.adapters.scbig.encoder import (
    GCAEBlock,
    GeneClusterAwareEncoder,
    ModuleInducedAttention,
    _lecun_normal_,
    chunk_means,
    sinusoidal_code,
)
from bench.adapters.scbig.pretrain import PretrainParams, encoder_validation_rows, pretrain, validation_error

G, CHUNK, WIDTH, E = 40, 16, 32, 6  # 3 chunks, the last half padding


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is several times faster than two on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_gcae(positional="random", dropout=0.0, seed=0, gene_mean=None, **overrides) -> GeneClusterAwareEncoder:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if isinstance(positional, str):
        positional = rng.normal(size=(G, E))
    gene_mean = rng.normal(size=G) if gene_mean is None else gene_mean
    args = dict(latent_dim=5, width=WIDTH, n_blocks=1, n_modules=4, heads=4, mlp_dim=48, dropout=dropout,
                chunk_size=CHUNK)
    return GeneClusterAwareEncoder(rng.permutation(G), gene_mean, positional, **{**args, **overrides})


def capture_input(module: nn.Module) -> list:
    seen = []
    module.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach().clone()))
    return seen


# --- architecture -------------------------------------------------------------------------------------


def test_tokens_are_consecutive_chunks_of_the_cluster_sorted_centred_genes():
    mean = torch.randn(G)
    net = small_gcae(gene_mean=mean.numpy()).eval()
    seen = capture_input(net.embed)
    x = torch.randn(3, G)
    z = net.encode(x)
    assert z.shape == (3, 5) and net.decode(z).shape == (3, G) and net(x).shape == (3, G)
    tokens = seen[0]
    assert tokens.shape == (3, math.ceil(G / CHUNK), CHUNK)
    flat = tokens.reshape(3, -1)
    order = net.order.numpy()
    assert torch.allclose(flat[:, :G], (x - mean)[:, order])
    assert torch.all(flat[:, G:] == 0)
    # one panel gene moved: only its sorted position (chunk p // CHUNK, slot p % CHUNK) changes
    j = int(order[21])  # sorted position 21: chunk 1, slot 5
    bumped = mean.clone().unsqueeze(0)
    bumped[0, j] += 1.0
    net.encode(bumped)
    changed = torch.nonzero(seen[-1][0]).tolist()
    assert changed == [[1, 5]]


def test_decode_unpermutes_to_panel_order_and_adds_the_panel_mean():
    mean = torch.randn(G)
    net = small_gcae(gene_mean=mean.numpy()).eval()
    n_chunks = math.ceil(G / CHUNK)
    ramp = torch.arange(n_chunks * CHUNK, dtype=torch.float32).reshape(1, n_chunks, CHUNK)
    net.unembed.register_forward_hook(lambda mod, args, out: ramp.expand(out.shape[0], -1, -1))
    out = net.decode(torch.zeros(2, 5))
    order = net.order.numpy()
    # sorted position p holds panel gene order[p]: the output at panel gene order[p] is p + its mean
    expected = torch.empty(G)
    expected[order] = torch.arange(G, dtype=torch.float32)
    assert torch.allclose(out, (expected + mean).expand(2, -1))


def test_projections_are_shared_and_a_block_has_no_module_mlp():
    net = small_gcae(n_blocks=2)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [m for m in linears if m.in_features == CHUNK] == [net.embed]
    assert [m for m in linears if m.out_features == CHUNK] == [net.unembed]
    assert net.embed.bias is not None and net.unembed.bias is not None
    assert len(net.encoder_blocks) == len(net.decoder_blocks) == 2
    assert net.encoder_blocks[0] is not net.decoder_blocks[0]
    block = net.encoder_blocks[0]
    block_linears = [m for m in block.modules() if isinstance(m, nn.Linear)]
    # 3 attention steps x (q, k, v, proj) + the token MLP's two layers: nothing for the modules' MLP
    assert len(block_linears) == 14
    assert sum(isinstance(m, nn.LayerNorm) for m in block.modules()) == 4
    for step in (block.attention.read, block.attention.mix, block.attention.write):
        assert step.q.bias is None and step.k.bias is None and step.v.bias is None
        assert step.proj.bias is not None
        assert step.norm.eps == 1e-6
    assert [type(m) for m in block.mlp] == [nn.Linear, nn.GELU, nn.Dropout, nn.Linear, nn.Dropout]
    assert block.mlp[1].approximate == "tanh" and block.mlp[0].out_features == 48
    assert block.attention.inducing.shape == (4, WIDTH)


def test_block_norms_after_each_residual():
    """Zero output projections and a zero last MLP layer reduce a post-LN block to LN_mlp(LN_write(x)); a
    pre-LN block would return x itself."""
    torch.manual_seed(0)
    block = GCAEBlock(WIDTH, 4, 4, 48, 0.0).eval()
    with torch.no_grad():
        for step in (block.attention.read, block.attention.mix, block.attention.write):
            step.proj.weight.zero_()
            step.proj.bias.zero_()
        block.mlp[3].weight.zero_()
        block.mlp[3].bias.zero_()
        block.attention.write.norm.weight.uniform_(0.5, 2.0)
        block.attention.write.norm.bias.normal_()
    x = 3.0 + 5.0 * torch.randn(2, 3, WIDTH)
    write = block.attention.write.norm
    expected = F.layer_norm(F.layer_norm(x, (WIDTH,), write.weight, write.bias, eps=1e-6), (WIDTH,), eps=1e-6)
    assert torch.allclose(block(x), expected, atol=1e-5)


def test_module_induced_attention_matches_a_transcription_of_the_official_steps():
    torch.manual_seed(1)
    heads, width, n_modules = 4, WIDTH, 5
    attention = ModuleInducedAttention(width, heads, n_modules, 0.0).eval()
    with torch.no_grad():
        for p in attention.parameters():
            p.add_(0.1 * torch.randn_like(p))  # nonzero biases and LN affine parameters
    x = torch.randn(2, 7, width)

    def step(module, query, context):  # IMPL:445-475, written from the flax code
        b, h, d = query.shape[0], heads, width // heads
        q = (query @ module.q.weight.T).reshape(b, -1, h, d).permute(0, 2, 1, 3)
        k = (context @ module.k.weight.T).reshape(b, -1, h, d).permute(0, 2, 1, 3)
        v = (context @ module.v.weight.T).reshape(b, -1, h, d).permute(0, 2, 1, 3)
        weights = torch.softmax(torch.einsum("bhmd,bhcd->bhmc", q, k) / math.sqrt(d), dim=-1)
        out = torch.einsum("bhmc,bhcd->bhmd", weights, v).permute(0, 2, 1, 3).reshape(b, -1, width)
        out = out @ module.proj.weight.T + module.proj.bias
        return F.layer_norm(query + out, (width,), module.norm.weight, module.norm.bias, eps=1e-6)

    modules = attention.inducing.expand(2, -1, -1)
    i1 = step(attention.read, modules, x)
    i2 = step(attention.mix, i1, i1)
    assert torch.allclose(attention(x), step(attention.write, x, i2), atol=1e-5)


def test_attention_weight_dropout_only_in_training():
    torch.manual_seed(2)
    attention = ModuleInducedAttention(WIDTH, 4, 4, 0.5)
    plain = ModuleInducedAttention(WIDTH, 4, 4, 0.0)
    plain.load_state_dict(attention.state_dict())
    x = torch.randn(2, 6, WIDTH)
    attention.train()
    assert not torch.allclose(attention(x), attention(x))
    attention.eval()
    assert torch.equal(attention(x), attention(x))
    assert torch.allclose(attention(x), plain.eval()(x))


def test_positional_code_is_the_chunk_mean_of_sorted_vectors_padding_included():
    rng = np.random.default_rng(3)
    positional = rng.normal(size=(G, E))
    net = small_gcae(positional=positional).eval()
    ordered = positional[net.order.numpy()]
    expected = np.stack([ordered[0:16].mean(0), ordered[16:32].mean(0), ordered[32:40].sum(0) / 16])
    assert np.allclose(net.chunk_code.numpy(), expected, atol=1e-6)
    assert np.allclose(chunk_means(ordered, CHUNK), expected)
    # with zero tokens, the first block reads LN(code @ W.T), a bias-free projection, layer-normalised
    with torch.no_grad():
        net.embed.weight.zero_()
        net.embed.bias.zero_()
    assert net.encode_position.project.bias is None
    seen = capture_input(net.encoder_blocks[0])
    net.encode(torch.randn(2, G))
    code = F.layer_norm(torch.as_tensor(expected, dtype=torch.float32) @ net.encode_position.project.weight.T,
                        (WIDTH,), eps=1e-6)
    assert torch.allclose(seen[0], code.expand(2, -1, -1), atol=1e-5)
    # the decoder has its own projection
    assert net.decode_position.project is not net.encode_position.project


def test_sinusoidal_code_without_gene_vectors():
    net = small_gcae(positional=None).eval()
    assert net.encode_position.project is None and net.decode_position.project is None
    n_chunks = math.ceil(G / CHUNK)
    p, i = 2, 3  # position 2, feature pair 3
    angle = p / 10000 ** (2 * i / WIDTH)
    code = sinusoidal_code(n_chunks, WIDTH)
    assert code.shape == (n_chunks, WIDTH)
    assert np.isclose(code[p, 2 * i], math.sin(angle)) and np.isclose(code[p, 2 * i + 1], math.cos(angle))
    with torch.no_grad():
        net.embed.weight.zero_()
        net.embed.bias.zero_()
    seen = capture_input(net.encoder_blocks[0])
    net.encode(torch.randn(1, G))
    assert torch.allclose(seen[0][0], torch.as_tensor(code))


def test_dropout_acts_on_token_plus_code():
    net = small_gcae(dropout=0.5).train()
    with torch.no_grad():
        net.embed.weight.zero_()
        net.embed.bias.fill_(1.0)
    seen = capture_input(net.encoder_blocks[0])
    torch.manual_seed(4)
    net.encode(torch.randn(4, G))
    total = 1.0 + F.layer_norm(net.chunk_code @ net.encode_position.project.weight.T, (WIDTH,), eps=1e-6)
    kept = seen[0] != 0
    assert 0 < kept.float().mean() < 1
    assert torch.allclose(seen[0][kept], (2.0 * total).expand(4, -1, -1)[kept], atol=1e-5)


def test_initialisation_is_flax_default():
    torch.manual_seed(5)
    weight = torch.empty(512, 400)
    _lecun_normal_(weight)
    assert abs(weight.std().item() * math.sqrt(400) - 1.0) < 0.02
    assert abs(weight.mean().item()) < 1e-3
    bound = 2.0 / math.sqrt(400) / 0.87962566103423978
    assert weight.abs().max().item() <= bound + 1e-6 and weight.abs().max().item() > 0.95 * bound

    net = small_gcae(width=64, mlp_dim=256, heads=4)
    for module in net.modules():
        if isinstance(module, nn.Linear):
            std = module.weight.std().item() * math.sqrt(module.in_features)
            assert 0.7 < std < 1.3, (module, std)
            assert module.bias is None or torch.all(module.bias == 0)
        if isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0) and module.eps == 1e-6
    inducing = torch.cat([b.attention.inducing.flatten() for b in [*net.encoder_blocks, *net.decoder_blocks]])
    assert abs(inducing.std().item() - 0.02) < 0.004


def test_gcae_learns_a_low_rank_dataset():
    rng = np.random.default_rng(6)
    factors = rng.normal(size=(256, 3)) @ rng.normal(size=(3, G))
    x = (factors + 0.05 * rng.normal(size=(256, G)) + rng.normal(size=G)).astype(np.float32)
    net = GeneClusterAwareEncoder(rng.permutation(G), x.mean(0), None, latent_dim=4, width=32, n_blocks=1,
                                  n_modules=4, heads=4, mlp_dim=64, dropout=0.0, chunk_size=8)
    torch.manual_seed(6)
    data = torch.from_numpy(x)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(300):
        batch = data[torch.randint(0, 256, (64,))]
        loss = ((net(batch) - batch) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    with torch.no_grad():
        mse = ((net(data) - data) ** 2).mean().item()
    variance = float(((x - x.mean(0)) ** 2).mean())
    assert mse < 0.05 * variance, (mse, variance)


# --- pre-training ---------------------------------------------------------------------------------------


class Recorder(nn.Module):
    """A tiny autoencoder that records its training-mode batch sizes."""

    def __init__(self, n_genes: int):
        super().__init__()
        self.layer = nn.Linear(n_genes, n_genes)
        self.batches: list[int] = []

    def forward(self, x):
        if self.training:
            self.batches.append(x.shape[0])
        return self.layer(x)


def test_pretrain_evaluates_every_eval_every_epochs_and_restores_the_best(monkeypatch):
    net = Recorder(4)
    errors = iter([5.0, 3.0, 4.0, 3.0, 1.0])  # best at the 2nd; the 4th ties, not an improvement
    evaluated = []

    def fake_error(model, x, batch_size, device):
        evaluated.append((len(model.batches), {k: v.clone() for k, v in model.state_dict().items()}))
        return next(errors)

    monkeypatch.setattr(pretrain_module, "validation_error", fake_error)
    params = PretrainParams(epochs=100, batch_size=4, learning_rate=1e-2, eval_every=5, patience=2)
    best = pretrain(net, np.ones((10, 4), np.float32), np.ones((3, 4), np.float32), params,
                    np.random.default_rng(0), "cpu")
    assert net.batches == [4, 4, 2] * 20  # 20 epochs, last partial batch kept, then 2 bad evaluations
    assert [n for n, _ in evaluated] == [15, 30, 45, 60]  # after epochs 5, 10, 15, 20; none before
    assert best == 3.0
    assert all(torch.equal(v, evaluated[1][1][k]) for k, v in net.state_dict().items())
    assert not torch.equal(net.layer.weight, evaluated[3][1]["layer.weight"])
    assert not net.training


def test_pretrain_without_validation_cells_keeps_the_last_weights():
    net = Recorder(4)
    params = PretrainParams(epochs=3, batch_size=8, learning_rate=1e-2, eval_every=1, patience=1)
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    assert pretrain(net, sp.csr_matrix(x), np.zeros((0, 4), np.float32), params, np.random.default_rng(0),
                    "cpu") == np.inf
    assert net.batches == [8, 2] * 3


def test_validation_error_is_the_mean_of_batch_errors_with_dropout_off():
    class Zero(nn.Module):
        def forward(self, x):
            assert not self.training
            return torch.zeros_like(x)

    x = np.array([[1.0, 1.0], [1.0, 1.0], [3.0, 3.0]], np.float32)
    assert validation_error(Zero().train(), x, 2, "cpu") == pytest.approx((1.0 + 9.0) / 2)


def test_validation_cells_are_validation_controls_when_there_are_some():
    train = np.arange(20.0)[:, None]
    val = 100.0 + np.arange(50.0)[:, None]
    val_controls = np.zeros(50, bool)
    val_controls[10:40] = True
    rows, held = encoder_validation_rows(train, np.ones(20, bool), val, val_controls, eval_cells=12, seed=3)
    assert np.array_equal(rows, np.arange(20))
    expected = np.sort(np.random.default_rng(3).choice(np.arange(10, 40), size=12, replace=False))
    assert np.array_equal(held[:, 0], 100.0 + expected)
    again = encoder_validation_rows(train, np.ones(20, bool), val, val_controls, eval_cells=12, seed=3)[1]
    other = encoder_validation_rows(train, np.ones(20, bool), val, val_controls, eval_cells=12, seed=4)[1]
    assert np.array_equal(held, again) and not np.array_equal(held, other)
    # fewer controls than eval_cells: all of them
    _, held = encoder_validation_rows(train, np.ones(20, bool), val, val_controls, eval_cells=300, seed=3)
    assert np.array_equal(held[:, 0], 100.0 + np.arange(10, 40))


def test_without_validation_controls_half_the_training_controls_are_held_out():
    train = sp.csr_matrix(np.arange(1.0, 31.0)[:, None])
    train_controls = np.zeros(30, bool)
    train_controls[[1, 4, 5, 9, 12, 17, 20, 22, 25, 29]] = True  # 10 controls
    val = np.ones((8, 1))
    rows, held = encoder_validation_rows(train, train_controls, val, np.zeros(8, bool), eval_cells=300, seed=0)
    held_rows = held.toarray()[:, 0].astype(int) - 1
    assert sp.issparse(held) and len(held_rows) == 5  # min(300, 10 // 2)
    assert train_controls[held_rows].all()
    assert np.array_equal(np.sort(np.concatenate([rows, held_rows])), np.arange(30))
    assert np.array_equal(held_rows, np.sort(np.random.default_rng(1).choice(np.flatnonzero(train_controls), 5,
                                                                               replace=False)))
    assert train_controls[rows].sum() == 5
    _, held = encoder_validation_rows(train, train_controls, None, np.zeros(0, bool), eval_cells=3, seed=0)
    assert held.shape[0] == 3


def test_without_any_controls_any_validation_cells():
    train = np.zeros((6, 2))
    val = np.arange(40.0).reshape(20, 2)
    rows, held = encoder_validation_rows(train, np.array([1, 0, 0, 0, 0, 0], bool), val, np.zeros(20, bool),
                                         eval_cells=7, seed=2)
    assert np.array_equal(rows, np.arange(6))  # one training control: nothing to hold out
    expected = np.sort(np.random.default_rng(99).choice(20, size=7, replace=False))
    assert np.array_equal(held, val[expected])
    rows, held = encoder_validation_rows(train, np.zeros(6, bool), None, np.zeros(0, bool), eval_cells=7, seed=2)
    assert np.array_equal(rows, np.arange(6)) and held.shape == (0, 2)
