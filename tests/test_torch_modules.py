"""Flossing for anyone's PyTorch model (floss_utils/flossing/torch_modules.py).

Ground truths, each independent of the code under test:

* the module's own forward pass (PyTorch's ATen RNN kernels) for the state map and the state
  order;
* the book's tanh network (:class:`~floss_utils.lyapunov.maps.TanhRNN`, analytic Jacobian) for a
  one-layer ``nn.RNN``: the same map in rate form, and the conjugate pre-activation form within
  a bound derived from the conjugacy;
* a plain loop with ``torch.func.jacrev`` Jacobians of the module's own one-step forward and
  LAPACK Householder QR (``torch.linalg.qr``), for GRU and LSTM stacks;
* a stack whose second layer is disconnected: a block-diagonal Jacobian whose spectrum is the
  union of its layers' spectra, exactly (to round-off) with a tangent basis aligned to the blocks;
* ``torch.autograd.gradcheck`` (finite differences) for the gradients with respect to the
  module's parameters.

All in float64; tolerances are stated per test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from floss_utils.flossing.torch_modules import (ModuleFlosser, RecurrentModuleMap, module_exponents,
                                                pack_state, state_size, unpack_state)
from floss_utils.flossing.torch_modules import _spec
from floss_utils.flossing.trainer import schedule
from floss_utils.lyapunov.estimator import NonFiniteError, lyapunov_spectrum
from floss_utils.lyapunov.maps import TanhRNN, sech2

from conftest import F64, gen

pytestmark = pytest.mark.usefixtures("one_thread")

# (constructor, description): every kind, layers 1-3, batch_first both ways, with/without bias,
# LSTM with projection, and the cells
MODULES = {
    "rnn_tanh_2layers": lambda: nn.RNN(3, 5, num_layers=2),
    "rnn_relu_nobias": lambda: nn.RNN(3, 6, nonlinearity="relu", bias=False, batch_first=True),
    "gru_3layers_bf": lambda: nn.GRU(3, 4, num_layers=3, batch_first=True),
    "gru_nobias": lambda: nn.GRU(3, 4, bias=False),
    "lstm_2layers": lambda: nn.LSTM(3, 4, num_layers=2),
    "lstm_proj_bf": lambda: nn.LSTM(3, 5, num_layers=2, proj_size=3, batch_first=True),
    "lstm_nobias": lambda: nn.LSTM(3, 4, bias=False, batch_first=True),
    "rnncell": lambda: nn.RNNCell(3, 5),
    "grucell": lambda: nn.GRUCell(3, 4),
    "lstmcell": lambda: nn.LSTMCell(3, 4),
}


def _module(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MODULES[name]().double()


def _inputs(model: nn.Module, T: int, B: int, seed: int = 1, scale: float = 1.0) -> torch.Tensor:
    x = scale * torch.randn(T, B, 3, dtype=F64, generator=gen(seed))
    return x.transpose(0, 1).contiguous() if getattr(model, "batch_first", False) else x


def _run_module(model: nn.Module, x: torch.Tensor, hx):
    """The module's own forward over the sequence; returns its final state in its format."""
    if isinstance(model, nn.RNNCellBase):
        h = hx
        for x_t in x.unbind(0):
            h = model(x_t, h)
        return h
    return model(x, hx)[1]


def _random_state(model: nn.Module, B: int, seed: int = 2, scale: float = 0.5) -> torch.Tensor:
    return scale * torch.randn(B, state_size(model), dtype=F64, generator=gen(seed))


def _q0(B: int, S: int, k: int, seed: int = 3) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(B, S, k, dtype=F64, generator=gen(seed)))[0]


# ------------------------------------------------------------------ the state map and its order


@pytest.mark.parametrize("name", list(MODULES))
def test_step_reproduces_the_modules_forward_pass(name):
    # ground truth: the module's own forward (ATen kernels) over 20 steps from a random state;
    # the cell equations written from its weight tensors give the same final state packed in the
    # documented order; 1e-12 = float64 round-off over 20 steps of O(1) values
    model = _module(name)
    B, T = 3, 20
    x = _inputs(model, T, B)
    s0 = _random_state(model, B)
    final = pack_state(model, _run_module(model, x, unpack_state(model, s0)))
    spec = _spec(model)
    xt = x.transpose(0, 1) if spec.batch_first else x
    system = RecurrentModuleMap(model, xt, F64, "stacked", spec)
    s = s0
    for t in range(T):
        s = system.step(s, system.drive(t))
    assert torch.allclose(s, final, atol=1e-12, rtol=0)


def test_state_order_is_h_of_every_layer_then_c_of_every_layer():
    # ground truth: the order written out by hand from PyTorch's (h_n, c_n), shape (L, B, H)
    model = nn.LSTM(2, 3, num_layers=2, proj_size=2).double()
    h = torch.arange(2 * 4 * 2, dtype=F64).reshape(2, 4, 2)  # (L, B, H_out)
    c = 100 + torch.arange(2 * 4 * 3, dtype=F64).reshape(2, 4, 3)  # (L, B, H)
    s = pack_state(model, (h, c))
    expected = torch.cat([h[0], h[1], c[0], c[1]], dim=-1)
    assert torch.equal(s, expected) and state_size(model) == 2 * (2 + 3) == s.shape[-1]
    h2, c2 = unpack_state(model, s)
    assert torch.equal(h2, h) and torch.equal(c2, c)
    gru = nn.GRU(2, 3, num_layers=3)
    hg = torch.randn(3, 4, 3)
    assert torch.equal(pack_state(gru, hg), torch.cat(list(hg), -1))
    assert torch.equal(pack_state(gru, hg[:, 0]), torch.cat(list(hg[:, 0]), -1))  # unbatched (L, H)


@pytest.mark.parametrize("name", ["rnn_tanh_2layers", "gru_3layers_bf", "lstm_proj_bf", "lstmcell"])
def test_three_ways_of_applying_the_jacobian_agree(name):
    # stacked products, folded dual numbers and vmapped torch.func.jvp are three routes of
    # forward-mode AD to the same D_t Q; same trajectory, same Q_0: equal to round-off (1e-12
    # over 40 QR steps of a well-conditioned basis)
    model = _module(name)
    x = _inputs(model, 40, 2)
    hx = unpack_state(model, _random_state(model, 2))
    k = 3
    q0 = _q0(2, state_size(model), k)
    out = {m: module_exponents(model, x, k, hx=hx, q0=q0, transient=5, tangents=m, reorth="qr")
           for m in ("stacked", "fold", "vmap")}
    assert torch.allclose(out["stacked"], out["fold"], atol=1e-12, rtol=0)
    assert torch.allclose(out["stacked"], out["vmap"], atol=1e-12, rtol=0)


# ------------------------------------------------------------------ the book's tanh network


def _book_tanh(N=6, seed=4):
    g = gen(seed)
    J = 1.3 * torch.randn(N, N, dtype=F64, generator=g) / math.sqrt(N)
    W_s = torch.randn(N, dtype=F64, generator=g)
    b = 0.1 * torch.rand(N, dtype=F64, generator=g)
    return J, W_s, b


def _rnn_with(J, W_s, b):
    """nn.RNN (tanh) loaded with the book network's weights: rate form r' = tanh(J r + W_s s + b)."""
    N = J.shape[0]
    rnn = nn.RNN(1, N).double()
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(J)
        rnn.weight_ih_l0.copy_(W_s[:, None])
        rnn.bias_ih_l0.copy_(b)
        rnn.bias_hh_l0.zero_()
    return rnn


def test_nn_rnn_equals_the_book_tanh_network_in_rate_form():
    # ground truth: TanhRNN(form="rate"), analytic Jacobian diag(sech^2 a) J, on the same drive
    # u_t = W_s s_t + b: the same dynamical system, same Q_0 -> same exponents to round-off
    # (1e-12 over 200 QR steps)
    J, W_s, b = _book_tanh()
    rnn = _rnn_with(J, W_s, b)
    B, T, k = 2, 200, 6
    s = torch.randint(0, 2, (T, B, 1), generator=gen(5)).double()
    r0 = torch.tanh(torch.randn(B, 6, dtype=F64, generator=gen(6)))
    q0 = _q0(B, 6, k)
    lam = module_exponents(rnn, s, k, hx=r0[None], q0=q0, transient=0, reorth="qr")
    book = TanhRNN(J.expand(B, 6, 6), form="rate")
    ref = lyapunov_spectrum(book, r0, s * W_s + b, steps=T, k=k, q0=q0, reorth="qr").exponents
    assert torch.allclose(lam, ref, atol=1e-12, rtol=0)


def test_nn_rnn_and_the_preactivation_form_share_exponents_within_the_conjugacy_bound():
    # GF's network runs in pre-activation form x' = J tanh(x) + u; with r = tanh(x) it is the rate
    # form r' = tanh(J r + u') (u' the next drive), so the two are conjugate by x -> tanh(x) with
    # Jacobian P = diag(sech^2 x): the rate form's products are P_T (D_T .. D_1) P_0^{-1}. With
    # bases spanning the same nested subspaces (q0_pre = orth(P_0^{-1} q0)), the log-volume of the
    # first j vectors differs by at most j c, c = -ln min sech^2(x_0) - ln min sech^2(x_T), so
    # |Delta lambda_j| <= (2j - 1) c / T (+ round-off): the forms share exponents as T -> infinity.
    J, W_s, b = _book_tanh()
    rnn = _rnn_with(J, W_s, b)
    B, T, k, N = 2, 1000, 4, 6
    s = torch.randint(0, 2, (T + 1, B, 1), generator=gen(7)).double()
    x0 = torch.randn(B, N, dtype=F64, generator=gen(8))
    q0 = _q0(B, N, k)
    lam = module_exponents(rnn, s[1:], k, hx=torch.tanh(x0)[None], q0=q0, transient=0, reorth="qr")
    # pre-activation: x_t = J tanh(x_{t-1}) + W_s s_t + b, the same trajectory (r_t = tanh(x_t))
    p0 = sech2(x0)
    q_pre = torch.linalg.qr(q0 / p0.unsqueeze(-1))[0]
    pre = TanhRNN(J.expand(B, N, N), form="preactivation")
    res = lyapunov_spectrum(pre, x0, s[1:] * W_s + b, steps=T, k=k, q0=q_pre, reorth="qr")
    c = -torch.log(p0).amin(-1) - torch.log(sech2(res.final_state)).amin(-1)  # (B,)
    j = torch.arange(1, k + 1, dtype=F64)
    bound = (2 * j - 1) * c.unsqueeze(-1) / T + 1e-12
    assert bool(((lam - res.exponents).abs() <= bound).all()), ((lam - res.exponents).abs(), bound)
    assert float(bound.max()) < 0.05  # the bound is tight enough to say something at T = 1000


# ------------------------------------------------------------------ gated stacks vs jacrev + LAPACK


def _reference_loop(model, x, hx, q0, transient):
    """Exponents from the module's own one-step forward: Jacobian by torch.func.jacrev, then
    Q <- D Q and a LAPACK Householder QR per step; log|R_ii| averaged after the transient."""
    B = q0.shape[0]
    time_major = x.transpose(0, 1) if getattr(model, "batch_first", False) else x
    s_all = pack_state(model, hx)
    out = []
    for b in range(B):
        s, Q = s_all[b].clone(), q0[b].clone()
        acc = torch.zeros(Q.shape[-1], dtype=F64)
        for t in range(time_major.shape[0]):
            x_t = time_major[t, b].reshape(1, 1, -1)
            if getattr(model, "batch_first", False):
                x_t = x_t.transpose(0, 1)

            def f(v, x_t=x_t):
                st = unpack_state(model, v.unsqueeze(0))
                return pack_state(model, model(x_t, st)[1]).squeeze(0)

            D = torch.func.jacrev(f)(s)
            with torch.no_grad():
                s = f(s)
            Q, R = torch.linalg.qr(D @ Q)
            if t >= transient:
                acc += torch.log(torch.abs(torch.diagonal(R)))
        out.append(acc / (time_major.shape[0] - transient))
    return torch.stack(out)


@pytest.mark.parametrize("name", ["gru_3layers_bf", "gru_nobias", "lstm_2layers", "lstm_proj_bf", "lstm_nobias"])
def test_gated_exponents_equal_a_jacrev_and_lapack_loop(name):
    # same trajectory, same Q_0; the estimator's Cholesky QR (float64 default) against Householder
    # QR of explicit Jacobians: equal to round-off amplified by the basis' conditioning
    # (1e-10 over 30 steps with k < S)
    model = _module(name)
    B, T, transient = 2, 30, 4
    x = _inputs(model, T, B)
    hx = unpack_state(model, _random_state(model, B))
    k = state_size(model) - 2
    q0 = _q0(B, state_size(model), k)
    with torch.no_grad():
        lam = module_exponents(model, x, k, hx=hx, q0=q0, transient=transient)
        ref = _reference_loop(model, x, hx, q0, transient)
    assert torch.allclose(lam, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_a_disconnected_second_layer_gives_the_union_of_the_layer_spectra(kind):
    # With weight_ih_l1 = 0 the second layer never sees the first: the step's Jacobian is block
    # diagonal, one block per layer (for the LSTM, layer 1 = (h1, c1) and layer 2 = (h2, c2),
    # interleaved in the state as [h1, h2, c1, c2]). A Q_0 whose first k1 columns live on layer 1's
    # coordinates and the rest on layer 2's stays block diagonal under D_t and under every QR, so
    # the exponents are exactly layer 1's spectrum (a one-layer module on x) followed by layer 2's
    # (a one-layer module on zero input): equal to round-off (1e-12). A wrong state order would
    # mix the blocks.
    torch.manual_seed(0)
    H, B, T = 3, 2, 40
    cls = nn.GRU if kind == "gru" else nn.LSTM
    stack = cls(2, H, num_layers=2).double()
    with torch.no_grad():
        stack.weight_ih_l1.zero_()
    one = [cls(2, H).double(), cls(H, H).double()]
    for layer, mod in enumerate(one):
        with torch.no_grad():
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(mod, f"{n}_l0").copy_(getattr(stack, f"{n}_l{layer}"))
    x = torch.randn(T, B, 2, dtype=F64, generator=gen(9))
    S = state_size(stack)
    per = S // 2  # dimensions per layer
    k1, k2 = per - 1, per - 1
    idx = ([list(range(0, H)), list(range(H, 2 * H))] if kind == "gru"
           else [[*range(0, H), *range(2 * H, 3 * H)], [*range(H, 2 * H), *range(3 * H, 4 * H)]])
    qa, qb = _q0(B, per, k1, seed=10), _q0(B, per, k2, seed=11)
    q0 = torch.zeros(B, S, k1 + k2, dtype=F64)
    q0[:, idx[0], :k1] = qa
    q0[:, idx[1], k1:] = qb
    s0 = _random_state(stack, B)
    lam = module_exponents(stack, x, k1 + k2, hx=unpack_state(stack, s0), q0=q0, transient=3)
    lam1 = module_exponents(one[0], x, k1, hx=unpack_state(one[0], s0[:, idx[0]]), q0=qa, transient=3)
    lam2 = module_exponents(one[1], torch.zeros(T, B, H, dtype=F64), k2, hx=unpack_state(one[1], s0[:, idx[1]]),
                            q0=qb, transient=3)
    assert torch.allclose(lam, torch.cat([lam1, lam2], -1), atol=1e-12, rtol=0)


# ------------------------------------------------------------------ gradients


class _Exponents(nn.Module):
    """The flossing loss of a wrapped module as a module, for torch.func.functional_call."""

    def __init__(self, rnn, x, q0, transient):
        super().__init__()
        self.rnn, self.x, self.q0, self.transient = rnn, x, q0, transient

    def forward(self):
        lam = module_exponents(self.rnn, self.x, self.q0.shape[-1], q0=self.q0, transient=self.transient,
                               hx=self.hx)
        return ((lam + 0.2) ** 2).mean(-1)


@pytest.mark.parametrize("name", ["rnn_tanh_2layers", "gru_nobias", "lstm_proj_bf"])
def test_gradcheck_with_respect_to_the_modules_own_parameters(name):
    # finite differences (torch.autograd.gradcheck, float64, default tolerances) of the flossing
    # loss with respect to every parameter tensor of the real module, substituted through
    # torch.func.functional_call: reverse mode through the forward-mode tangents and every
    # Cholesky QR (its hand-written backward); T = 10, k = 3
    model = _module(name)
    B, T, k = 2, 10, 3
    wrapper = _Exponents(model, _inputs(model, T, B), _q0(B, state_size(model), k), transient=2)
    wrapper.hx = unpack_state(model, _random_state(model, B))
    names = [f"rnn.{n}" for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def f(*ps):
        return torch.func.functional_call(wrapper, dict(zip(names, ps)), ())

    assert torch.autograd.gradcheck(f, params, fast_mode=True)


def test_an_optimizer_on_module_parameters_flosses_the_module():
    # The exponents are differentiable with respect to module.parameters() themselves: 60 Adam
    # steps on them (lr 0.02, k = 6 of S = 16, target 0) bring the flossing loss below half its
    # first value (GF: flossing drives the exponents toward the target), finitely
    torch.manual_seed(0)
    lstm = nn.LSTM(1, 8, batch_first=True).double()
    fl = ModuleFlosser(lstm, k=6)
    opt = torch.optim.Adam(lstm.parameters(), lr=0.02)
    g = gen(12)
    losses = fl.floss(opt, lambda: torch.randint(0, 2, (2, 40, 1), generator=g).double(), steps=60)
    assert losses.shape == (60,) and bool(torch.isfinite(losses).all())
    assert float(losses[-10:].mean()) < 0.5 * float(losses[0]), losses[[0, -1]]


def test_a_flossing_step_updates_only_the_optimizers_parameters_and_restores_grads():
    torch.manual_seed(0)
    gru = nn.GRU(1, 5).double()
    head = nn.Linear(5, 1).double()
    x = torch.randint(0, 2, (30, 2, 1), generator=gen(13)).double()
    for p in [*gru.parameters(), *head.parameters()]:
        p.grad = torch.full_like(p, 7.0)  # a task gradient waiting for its optimizer step
    before = {n: p.detach().clone() for n, p in gru.named_parameters()}
    flossed = [gru.weight_hh_l0]
    loss = ModuleFlosser(gru, k=3).step(torch.optim.SGD(flossed, lr=0.1), x)
    assert loss.ndim == 0 and not loss.requires_grad
    for n, p in gru.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (n == "weight_hh_l0"), n
        assert torch.equal(p.grad, torch.full_like(p, 7.0)), n  # task gradients untouched
    assert torch.equal(head.weight.grad, torch.full_like(head.weight, 7.0))


def test_loss_is_added_to_a_task_loss_and_backpropagates_to_the_module():
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 4, num_layers=2, batch_first=True)
    x = torch.randn(3, 25, 2)
    out, _ = lstm(x)
    total = out.pow(2).mean() + 0.1 * ModuleFlosser(lstm, k=5).loss(x)
    total.backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in lstm.parameters())
    assert lstm.weight_hh_l1.grad.abs().sum() > 0


# ------------------------------------------------------------------ layouts, dtypes, cells


def test_batch_first_unbatched_and_mean_agree_with_the_time_major_batch():
    torch.manual_seed(0)
    a = nn.GRU(3, 4).double()
    b = nn.GRU(3, 4, batch_first=True).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(30, 2, 3, dtype=F64, generator=gen(14))
    q0 = _q0(2, 4, 3)
    la = module_exponents(a, x, 3, q0=q0)
    lb = module_exponents(b, x.transpose(0, 1), 3, q0=q0)
    assert torch.equal(la, lb) and la.shape == (2, 3)
    one = module_exponents(a, x[:, 1], 3, q0=q0[1])
    assert one.shape == (3,) and torch.allclose(one, la[1], atol=1e-14, rtol=0)
    assert torch.allclose(module_exponents(a, x, 3, q0=q0, reduce="mean"), la.mean(0), atol=1e-15, rtol=0)


def test_a_user_cell_gives_the_modules_exponents():
    # a function cell step(state, x) built from nn.LSTMCell (state = [h, c] concatenated) equals
    # the LSTMCell itself (same equations, same state order): 1e-12; its gradients reach the
    # cell's parameters
    torch.manual_seed(0)
    cell = nn.LSTMCell(3, 4).double()

    def step(s, x):
        h, c = cell(x, (s[..., :4], s[..., 4:]))
        return torch.cat([h, c], -1)

    x = torch.randn(30, 2, 3, dtype=F64, generator=gen(15))
    s0 = _random_state(cell, 2)
    q0 = _q0(2, 8, 5)
    ref = module_exponents(cell, x, 5, hx=unpack_state(cell, s0), q0=q0)
    for mode in ("vmap", "fold"):
        lam = module_exponents(step, x, 5, hx=s0, q0=q0, tangents=mode)
        assert torch.allclose(lam, ref, atol=1e-12, rtol=0), mode
    lam.sum().backward()
    assert cell.weight_hh.grad is not None and cell.weight_hh.grad.abs().sum() > 0
    fl = ModuleFlosser(step, k=2, state_size=8)
    assert fl.exponents(x, s0).shape == (2, 2)


def test_float32_modules_stay_in_float32_unless_asked_and_gradients_reach_them():
    torch.manual_seed(0)
    lstm = nn.LSTM(1, 6)
    x = torch.randint(0, 2, (40, 2, 1)).float()
    assert module_exponents(lstm, x, 4).dtype == torch.float32
    lam = module_exponents(lstm, x, 4, dtype=torch.float64)
    assert lam.dtype == torch.float64
    lam.sum().backward()
    assert lstm.weight_hh_l0.grad.dtype == torch.float32 and lstm.weight_hh_l0.grad.abs().sum() > 0
    # float32 and float64 computations of the same exponents agree to float32 accuracy
    q0 = _q0(2, 12, 4)
    with torch.no_grad():
        l32 = module_exponents(lstm, x, 4, q0=q0.float())
        l64 = module_exponents(lstm, x, 4, q0=q0, dtype=torch.float64)
    assert torch.allclose(l32.double(), l64, atol=1e-4, rtol=0)
    # the precision may be named as the book's parameters spell it; anything else is refused
    with torch.no_grad():
        assert torch.equal(module_exponents(lstm, x, 4, q0=q0, dtype="float64"), l64)
    with pytest.raises(ValueError, match=r"nn.LSTM.*float32 or float64.*'float16'"):
        module_exponents(lstm, x, 4, dtype="float16")


def test_dropout_is_refused_unless_ignored_and_then_it_is_the_map_without_dropout():
    torch.manual_seed(0)
    drop = nn.LSTM(2, 3, num_layers=2, dropout=0.3).double()
    plain = nn.LSTM(2, 3, num_layers=2).double()
    plain.load_state_dict(drop.state_dict())
    x = torch.randn(30, 2, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"dropout=0\.3.*ignore_dropout=True"):
        module_exponents(drop, x, 3)
    q0 = _q0(2, 12, 3)
    assert torch.equal(module_exponents(drop, x, 3, q0=q0, ignore_dropout=True),
                       module_exponents(plain, x, 3, q0=q0))


def test_functional_call_substitutions_are_seen():
    torch.manual_seed(0)
    rnn = nn.RNN(2, 4).double()
    x = torch.randn(30, 2, 2, dtype=F64)
    q0 = _q0(2, 4, 2)
    scaled = {n: (3.0 * p if n == "weight_hh_l0" else p) for n, p in rnn.named_parameters()}
    wrapper = _Exponents(rnn, x, q0, transient=5)
    wrapper.hx = None
    a = torch.func.functional_call(wrapper, {f"rnn.{n}": p for n, p in scaled.items()}, ())
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(3.0)
    b = wrapper()
    assert torch.allclose(a, b, atol=1e-14, rtol=0)


def test_a_schedule_drives_flossing_in_a_user_loop():
    # the book's schedules plug in as steps=sched.floss_steps(epoch): E_p before epoch 1, E_i at
    # every multiple of E_f, at most N_i rounds
    sched = schedule("both", pre_steps=3, inter_steps=2, inter_every=5, inter_rounds=2)
    torch.manual_seed(0)
    gru = nn.GRU(1, 3).double()
    fl = ModuleFlosser(gru, k=2)
    opt = torch.optim.Adam(gru.parameters(), lr=1e-3)
    x = torch.randint(0, 2, (30, 1, 1)).double()
    done = [len(fl.floss(opt, x, sched.floss_steps(epoch))) for epoch in range(1, 16)]
    assert done == [3, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_exponents():  # pragma: no cover - no GPU in CI
    torch.manual_seed(0)
    lstm = nn.LSTM(1, 8, num_layers=2).double()
    x = torch.randint(0, 2, (40, 3, 1)).double()
    q0 = _q0(3, 32, 6)
    cpu = module_exponents(lstm, x, 6, q0=q0)
    gpu = module_exponents(lstm.cuda(), x, 6, q0=q0)  # inputs and q0 follow the module
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-10, rtol=0)
    # a CPU generator draws the basis on the CPU for a CUDA model: the CPU run's exponents
    a = module_exponents(lstm, x, 6, generator=gen(3))
    b = module_exponents(lstm.cpu(), x, 6, generator=gen(3))
    assert torch.allclose(a.cpu(), b, atol=1e-10, rtol=0)


# ------------------------------------------------------------------ bad inputs


def test_unsupported_modules_are_refused_naming_them():
    x = torch.randn(20, 2, 3)
    with pytest.raises(TypeError, match=r"unsupported module torch\.nn\.modules\.linear\.Linear.*lambda s, x"):
        module_exponents(nn.Linear(3, 3), x, 2)
    with pytest.raises(TypeError, match=r"unsupported module .*Transformer"):
        module_exponents(nn.Transformer(d_model=4, nhead=1), x, 2)
    with pytest.raises(TypeError, match="got int"):
        module_exponents(3, x, 2)
    with pytest.raises(ValueError, match="needs its state size"):
        module_exponents(lambda s, x: s, x, 2)


def test_packed_sequences_are_refused():
    lstm = nn.LSTM(3, 4)
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(20, 2, 3), [20, 15])
    with pytest.raises(TypeError, match=r"nn\.LSTM.*packed sequences are not supported"):
        module_exponents(lstm, packed, 2)


def test_bad_sizes_and_shapes_are_refused_with_what_and_where():
    lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    x = torch.randn(2, 30, 3)
    with pytest.raises(ValueError, match=r"nn\.LSTM.*k = 17.*S = 16.*2 layer\(s\) x \(h: 4 \+ c: 4\)"):
        module_exponents(lstm, x, 17)
    with pytest.raises(ValueError, match=r"k = 17.*S = 16"):
        ModuleFlosser(lstm, k=17)
    with pytest.raises(ValueError, match=r"inputs have 5 features per step but the module's input_size is 3.*\(B, T, I\)"):
        module_exponents(lstm, torch.randn(2, 30, 5), 2)
    with pytest.raises(ValueError, match="must have shape"):
        module_exponents(lstm, torch.randn(30, 3, 2, 1), 2)
    with pytest.raises(ValueError, match=r"bidirectional"):
        module_exponents(nn.GRU(3, 4, bidirectional=True), torch.randn(30, 2, 3), 2)
    with pytest.raises(ValueError, match=r"h must have shape \(num_layers, B, 4\) = \(2, B, 4\)"):
        module_exponents(lstm, x, 2, hx=(torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(ValueError, match=r"pair \(h, c\)"):
        module_exponents(lstm, x, 2, hx=torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match=r"initial state is for 3 sequence\(s\) but the inputs hold 2"):
        module_exponents(lstm, x, 2, hx=(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)))
    with pytest.raises(ValueError, match=r"too short for the default transient"):
        module_exponents(lstm, torch.randn(2, 8, 3), 2)
    with pytest.raises(ValueError, match=r"transient must be an int in \[0, T\)"):
        module_exponents(lstm, x, 2, transient=30)
    with pytest.raises(ValueError, match=r"batch_first=False given"):
        module_exponents(lstm, x, 2, batch_first=False)
    with pytest.raises(TypeError, match="floating point"):
        module_exponents(lstm, torch.ones(2, 30, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="reduce"):
        module_exponents(lstm, x, 2, reduce="sum")


def test_a_collapsing_relu_network_names_the_cause():
    rnn = nn.RNN(1, 3, nonlinearity="relu", bias=False)
    with torch.no_grad():
        rnn.weight_hh_l0.fill_(-1.0)
        rnn.weight_ih_l0.fill_(-1.0)
    with pytest.raises(NonFiniteError, match=r"nn\.RNN.*ReLU network has exponents -inf"):
        module_exponents(rnn, torch.ones(30, 1, 1), 3)


def test_lstm_gate_means_match_the_gates_of_a_hand_unrolled_cell():
    # ground truth: torch.nn.LSTMCell stepped by hand with the same weights, gates recomputed
    # from its pre-activations (PyTorch's order: input, forget, cell, output)
    from floss_utils.flossing.torch_modules import lstm_gate_means

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 5, batch_first=True).double()
    cell = torch.nn.LSTMCell(2, 5).double()
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in lstm.state_dict().items()})
    x = torch.randn(3, 7, 2, dtype=torch.float64)
    h = c = torch.zeros(3, 5, dtype=torch.float64)
    i_all, f_all = [], []
    with torch.no_grad():
        for t in range(7):
            pre = x[:, t] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
            i_all.append(torch.sigmoid(pre[:, :5]))
            f_all.append(torch.sigmoid(pre[:, 5:10]))
            h, c = cell(x[:, t], (h, c))
    i_ref, f_ref = float(torch.stack(i_all).mean()), float(torch.stack(f_all).mean())
    assert lstm_gate_means(lstm, x) == pytest.approx((i_ref, f_ref), rel=1e-12)
    lstm_t = torch.nn.LSTM(2, 5).double()  # time-first: the same module, inputs transposed
    lstm_t.load_state_dict(lstm.state_dict())
    assert lstm_gate_means(lstm_t, x.transpose(0, 1)) == pytest.approx((i_ref, f_ref), rel=1e-12)
