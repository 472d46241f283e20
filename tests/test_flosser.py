"""Gradient flossing: the loss, its gradient, the flossing step, the batched optimizer.

Ground truths: finite differences (gradcheck), the closed form of a scaled orthogonal map
(lambda_i = ln g, d lambda_i / d g = 1/g), torch.optim.Adam and torch's gradient clipping for one
member, and members flossed one by one. Float64 throughout. Each test states its tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch

from floss_utils.optim import BatchedAdam, clip_per_member
from floss_utils.lyapunov.maps import LinearMap, scaled_orthogonal
from floss_utils.flossing.flosser import (Flosser, FlossingConfig, evaluate_exponents, floss_step,
                                          flossing_loss, flossing_transient, network_exponents)
from floss_utils.lyapunov.estimator import NonFiniteError, lyapunov_spectrum, random_orthonormal
from floss_utils.flossing.tanh_network import GFNetwork, init_gf_networks

from conftest import F64, gen


def small_net(M: int = 2, N: int = 6, seed: int = 0) -> GFNetwork:
    return init_gf_networks(list(range(seed, seed + M)), N, 2, gain=1.0)


# ---------------------------------------------------------------- the loss and its gradient


def test_flossing_loss_definition():
    # exact arithmetic on a hand-made example: mean of squared distances to the target
    lam = torch.tensor([[0.5, -1.0, -2.0], [0.0, 0.0, -3.0]], dtype=F64)
    assert torch.allclose(flossing_loss(lam, 0.0), torch.tensor([(0.25 + 1 + 4) / 3, 3.0], dtype=F64))
    assert torch.allclose(flossing_loss(lam, torch.tensor([-1.0, 0.0], dtype=F64)),
                          torch.tensor([(2.25 + 0 + 1) / 3, 3.0], dtype=F64))
    # n_floss: only the first k_m exponents
    assert torch.allclose(flossing_loss(lam, 0.0, torch.tensor([1, 2])), torch.tensor([0.25, 0.0], dtype=F64))
    with pytest.raises(ValueError, match="n_floss"):
        flossing_loss(lam, 0.0, torch.tensor([0, 4]))


def test_transient_is_gf_protocol():
    # GF: T_p = 55 steps, the first 10 + ceil(55/10) = 16 discarded
    assert flossing_transient(55) == 16
    assert FlossingConfig().n_transient == 16 and FlossingConfig().k == 75


@pytest.mark.parametrize("reorth", ["qr", "cholqr"])
def test_gradcheck_flossing_loss(reorth):
    # The book's page 'Methods and reference values': gradcheck in float64 on N = 6, k = 3,
    # T = 10. Finite differences through the whole unrolled trajectory and every QR; gradcheck's
    # default tolerances (atol 1e-5, rtol 1e-3 against central differences with eps 1e-6) are met
    # with orders of magnitude to spare.
    N, k, T = 6, 3, 10
    net = small_net(2, N)
    bits = torch.randint(0, 2, (T, 2), generator=gen(5)).to(F64)
    q0 = random_orthonormal(2, N, k, generator=gen(6))

    def f(J, W_s, b):
        n = GFNetwork(J=J, W_s=W_s, b=b, w_r=net.w_r, c=net.c, x0=net.x0)
        lam = network_exponents(n, bits, k=k, transient=3, q0=q0, reorth=reorth)
        return flossing_loss(lam, -0.2)

    inputs = tuple(t.clone().requires_grad_(True) for t in (net.J, net.W_s, net.b))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_scaled_orthogonal_gradient_closed_form():
    # h <- g O h: lambda_i = ln g exactly, so L = (ln g - t)^2 and dL/dg = 2 (ln g - t) / g.
    # Autograd through 40 QR steps must reproduce it to round-off (1e-12).
    M, N, k = 3, 8, 5
    O = scaled_orthogonal(M, N, 1.0, generator=gen(1))
    g = torch.tensor([0.7, 1.0, 1.6], dtype=F64, requires_grad=True)
    target = torch.tensor([0.0, -0.5, 0.2], dtype=F64)
    lam = lyapunov_spectrum(LinearMap(g[:, None, None] * O), torch.randn(M, N, dtype=F64, generator=gen(2)),
                            steps=40, k=k, generator=gen(3)).exponents
    assert torch.allclose(lam, torch.log(g.detach())[:, None].expand(M, k), atol=1e-12, rtol=0)
    (grad,) = torch.autograd.grad(flossing_loss(lam, target).sum(), g)
    expect = 2 * (torch.log(g.detach()) - target) / g.detach()
    assert torch.allclose(grad, expect, atol=1e-12, rtol=0)


def test_flossing_scaled_orthogonal_map_moves_ln_g_to_target():
    # Flossing g of h <- g O h toward lambda* in {0, -0.5, -1}: the exponent is exactly ln g, the
    # loss (ln g - lambda*)^2 is convex in ln g, and Adam (lr 0.02, 400 steps) settles within
    # a few lr of the target: tolerance 0.02 on ln g.
    M, N, k = 3, 6, 4
    O = scaled_orthogonal(M, N, 1.0, generator=gen(4))
    g = torch.full((M,), 1.5, dtype=F64, requires_grad=True)
    targets = torch.tensor([0.0, -0.5, -1.0], dtype=F64)
    opt = BatchedAdam([g], lr=0.02)
    h0 = torch.randn(M, N, dtype=F64, generator=gen(5))

    def loss_fn():
        lam = lyapunov_spectrum(LinearMap(g[:, None, None] * O), h0, steps=10, k=k, generator=gen(6)).exponents
        return flossing_loss(lam, targets), lam

    for s in range(400):
        floss_step(loss_fn, opt, step=s)
    assert torch.allclose(torch.log(g.detach()), targets, atol=0.02, rtol=0)


def test_ons_does_not_change_exponents_or_gradient():
    # D_T..D_1 Q0 = Q R_T..R_1 and diag of a product of triangular matrices is the product of
    # diagonals: QR every 1 or every 3 steps gives the same exponents and gradient in exact
    # arithmetic. Tolerance 1e-10 (round-off amplified by cond of 3 steps, ~e^6).
    net = init_gf_networks([3], 20, 1)
    bits = torch.randint(0, 2, (55, 1), generator=gen(7)).to(F64)
    q0 = random_orthonormal(1, 20, 12, generator=gen(8))
    out = []
    for ons in (1, 3):
        J = net.J.clone().requires_grad_(True)
        n = GFNetwork(J=J, W_s=net.W_s, b=net.b, w_r=net.w_r, c=net.c, x0=net.x0)
        lam = network_exponents(n, bits, k=12, transient=16, q0=q0, ons=ons)
        (gJ,) = torch.autograd.grad(flossing_loss(lam).sum(), J)
        out.append((lam.detach(), gJ))
    assert torch.allclose(out[0][0], out[1][0], atol=1e-10, rtol=0)
    assert torch.allclose(out[0][1], out[1][1], atol=1e-10, rtol=0)


def test_n_floss_equals_flossing_fewer_vectors():
    # The first m columns of a QR do not depend on later columns: flossing the first m of k = 10
    # exponents is the same computation as flossing with m vectors (same first columns of Q0).
    # Tolerance 1e-11 (round-off; Cholesky QR of a 10- vs 4-column basis).
    net = init_gf_networks([1], 16, 1)
    bits = torch.randint(0, 2, (40, 1), generator=gen(9)).to(F64)
    q0 = random_orthonormal(1, 16, 10, generator=gen(10))
    grads = []
    for k, nf in ((10, torch.tensor([4])), (4, None)):
        J = net.J.clone().requires_grad_(True)
        n = GFNetwork(J=J, W_s=net.W_s, b=net.b, w_r=net.w_r, c=net.c, x0=net.x0)
        lam = network_exponents(n, bits, k=k, transient=8, q0=q0[..., :k])
        (gJ,) = torch.autograd.grad(flossing_loss(lam, -0.3, nf).sum(), J)
        grads.append(gJ)
    assert torch.allclose(grads[0], grads[1], atol=1e-11, rtol=0)


# ---------------------------------------------------------------- the flossing step on GF networks


def test_flossing_reduces_loss_on_tanh_network():
    # 150 flossing steps (k = 10 of N = 20, T_p = 40, lr 0.01) on two networks: the flossing loss
    # (re-evaluated on fresh held-out trajectories of 200 steps) drops at least 5-fold.
    net = init_gf_networks([0, 1], 20, 2)
    cfg = FlossingConfig(k=10, steps=40, lr=0.01)
    before = flossing_loss(evaluate_exponents(net, [0, 1], steps=200, k=10, key=99))
    Flosser(net, cfg, [0, 1]).run(150)
    after = flossing_loss(evaluate_exponents(net, [0, 1], steps=200, k=10, key=99))
    assert bool((after < before / 5).all()), (before, after)


def test_only_chosen_parameters_change():
    # params=("J",): W_s, b, w_r, c, x0 stay bit-identical; J moves.
    net = init_gf_networks([0, 1], 12, 2)
    ref = net.clone()
    Flosser(net, FlossingConfig(k=5, steps=25, params=("J",)), [0, 1]).run(3)
    for name in ("W_s", "b", "w_r", "c", "x0"):
        assert torch.equal(getattr(net, name).detach(), getattr(ref, name)), name
    assert not torch.equal(net.J.detach(), ref.J)
    # default params (W_s, J, b): readout and initial state untouched
    Flosser(net, FlossingConfig(k=5, steps=25), [0, 1]).run(2)
    for name in ("w_r", "c", "x0"):
        assert torch.equal(getattr(net, name).detach(), getattr(ref, name)), name
    assert not torch.equal(net.W_s.detach(), ref.W_s) and not torch.equal(net.b.detach(), ref.b)


def test_ensemble_flossing_equals_members_flossed_alone():
    # Members draw their bits and bases from their own seeds and have their own Adam states:
    # flossing 3 together (with member 1 skipped in step 2) equals flossing each alone.
    # Tolerance 1e-11: batched vs single BLAS calls differ in round-off only.
    cfg = FlossingConfig(k=6, steps=30, lr=0.01)
    seeds = [4, 5, 6]
    ens = init_gf_networks(seeds, 10, 2)
    fl = Flosser(ens, cfg, seeds, targets=[0.0, -0.5, -1.0], n_floss=[6, 1, 3])
    plan = [[True, True, True], [True, True, True], [True, False, True], [True, True, True]]
    for act in plan:
        fl.step(torch.tensor(act))
    for m, s in enumerate(seeds):
        one = init_gf_networks([s], 10, 2)
        f1 = Flosser(one, cfg, [s], targets=[[0.0, -0.5, -1.0][m]], n_floss=[[6, 1, 3][m]])
        for act in plan:
            if act[m]:
                f1.step()
        for name in ("J", "W_s", "b"):
            assert torch.allclose(getattr(ens, name)[m], getattr(one, name)[0], atol=1e-11, rtol=0), (m, name)


def test_nonfinite_raises_with_member_and_step():
    net = init_gf_networks([0, 1, 2], 8, 1)
    with torch.no_grad():
        net.W_s[1, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"flossing step 0.*m=1|m=1.*flossing step 0|b=1"):
        Flosser(net, FlossingConfig(k=4, steps=20)).step()


def test_nonfinite_mark_mode_marks_member_and_others_go_on():
    # member 1 has a NaN input weight: it is marked bad and left alone; members 0 and 2 are
    # flossed exactly as without it (tolerance 1e-11, round-off of batched vs smaller batch).
    seeds = [0, 1, 2]
    net = init_gf_networks(seeds, 8, 1)
    with torch.no_grad():
        net.W_s[1, 0] = float("nan")
    fl = Flosser(net, FlossingConfig(k=4, steps=20, lr=0.01), seeds, on_nonfinite="mark")
    out = fl.run(3)
    assert fl.bad.tolist() == [False, True, False]
    assert torch.isnan(out["loss"][:, 1]).all() and torch.isfinite(out["loss"][:, [0, 2]]).all()
    ref = init_gf_networks([0, 2], 8, 1)
    Flosser(ref, FlossingConfig(k=4, steps=20, lr=0.01), [0, 2]).run(3)
    assert torch.allclose(net.J.detach()[[0, 2]], ref.J.detach(), atol=1e-11, rtol=0)


# ---------------------------------------------------------------- the batched optimizer


def test_batched_adam_equals_torch_adam_per_member():
    # One member of BatchedAdam vs torch.optim.Adam on the same gradients (a quadratic):
    # Adam is elementwise; the two differ only in the order of round-off (tolerance 1e-13).
    torch.manual_seed(0)
    A = torch.randn(3, 5, 5, dtype=F64)
    x = torch.randn(3, 5, dtype=F64, requires_grad=True)
    xs = [x.detach()[m].clone().requires_grad_(True) for m in range(3)]
    opt = BatchedAdam([x], lr=0.05)
    refs = [torch.optim.Adam([xs[m]], lr=0.05) for m in range(3)]
    for _ in range(20):
        (g,) = torch.autograd.grad(((A @ x.unsqueeze(-1)) ** 2).sum(), x)
        opt.step([g])
        for m in range(3):
            refs[m].zero_grad()
            ((A[m] @ xs[m]) ** 2).sum().backward()
            refs[m].step()
    for m in range(3):
        assert torch.allclose(x.detach()[m], xs[m].detach(), atol=1e-13, rtol=0)


def test_per_member_clipping_matches_torch_clip_per_tensor():
    # clip_per_member on member m equals torch.nn.utils.clip_grad_norm_ of that member's slice
    # alone; torch divides by (norm + 1e-6), Flux's ClipNorm (GF) and we by the norm: relative
    # tolerance 1e-4 against torch, and the exact rescaling to norm 0.03 to 1e-15. A small member
    # is not rescaled by a large one.
    g = torch.randn(4, 3, 7, dtype=F64, generator=gen(0)) * torch.tensor([1e-3, 1.0, 10.0, 0.02], dtype=F64)[:, None, None]
    out = clip_per_member(g, 0.03)
    for m in range(4):
        p = torch.zeros_like(g[m], requires_grad=True)
        p.grad = g[m].clone()
        torch.nn.utils.clip_grad_norm_([p], 0.03)
        assert torch.allclose(out[m], p.grad, atol=0, rtol=1e-4), m
        norm = g[m].norm()
        expect = g[m] * 0.03 / norm if norm > 0.03 else g[m]
        assert torch.allclose(out[m], expect, atol=1e-15, rtol=1e-14), m
    assert torch.equal(out[0], g[0])  # norm below 0.03: untouched


def test_batched_adam_skips_inactive_and_nonfinite_members():
    x = torch.zeros(3, 2, dtype=F64)
    opt = BatchedAdam([x], lr=0.1)
    g = torch.ones(3, 2, dtype=F64)
    g[2, 0] = float("nan")
    upd = opt.step([g], active=torch.tensor([True, False, True]))
    assert upd.tolist() == [True, False, False]
    assert opt.steps.tolist() == [1, 0, 0]
    assert torch.equal(x[1], torch.zeros(2, dtype=F64)) and torch.equal(x[2], torch.zeros(2, dtype=F64))
    assert torch.allclose(x[0], torch.full((2,), -0.1, dtype=F64), atol=1e-12)  # first Adam step = lr


def test_bad_arguments_are_refused():
    net = init_gf_networks([0], 8, 1)
    with pytest.raises(ValueError, match="k"):
        Flosser(net, FlossingConfig(k=9, steps=20))
    with pytest.raises(ValueError, match="transient"):
        FlossingConfig(steps=10)
    with pytest.raises(ValueError, match="unknown GFNetwork parameter"):
        Flosser(net, FlossingConfig(k=4, steps=20, params=("W",)))
    with pytest.raises(ValueError, match="n_floss"):
        Flosser(net, FlossingConfig(k=4, steps=20), n_floss=[5])
    with pytest.raises(ValueError, match="ensemble size"):
        BatchedAdam([torch.zeros(2, 3), torch.zeros(3, 3)])
