"""Hessians, concentration measures and Adam's effective learning rates against ground truths.

Float64 throughout. Tolerances: exact identities computed two ways (Hessian of a quadratic,
closed-form Hessians, Gauss-Newton at zero residual, torch.optim.Adam) are compared at relative
1e-9 .. 1e-12 (round-off of sums of ~1e4 terms); central finite differences of the gradient with
step h have error ~h^2 x third derivative, so they are compared at relative 1e-6 for h = 1e-5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from floss_utils.curse_of_memory import landscape as ls
from floss_utils.curse_of_memory import theory as th
from floss_utils.curse_of_memory.students import ComplexDiagonalRNN, DenseRNN, LRU
from floss_utils.curse_of_memory.teacher import make_teacher
from floss_utils.curse_of_memory.student_training import kernel_error, lagged_gram, quadratic_loss

from conftest import F64, gen


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


class Quadratic(nn.Module):
    """Member-batched quadratic ``1/2 w^T Q_m w + b_m^T w`` plus a parameter used linearly."""

    def __init__(self, Q: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.Q, self.b = Q, b
        self.w = nn.Parameter(torch.randn(Q.shape[0], Q.shape[1], generator=gen(1), dtype=F64))
        self.c = nn.Parameter(torch.randn(Q.shape[0], 2, generator=gen(2), dtype=F64))

    def loss(self) -> torch.Tensor:
        w = self.w
        return 0.5 * torch.einsum("mi,mij,mj->m", w, self.Q, w) + (self.b * w).sum(-1) + 3.0 * self.c.sum(-1)


def test_hessian_of_known_quadratic_per_member():
    # Ground truth: the Hessian of 1/2 w^T Q w + b^T w + linear(c) is blockdiag(sym(Q), 0),
    # member by member (three members with different Q: checks the block-tangent trick).
    M, P = 3, 5
    A = torch.randn(M, P, P, generator=gen(0), dtype=F64)
    model = Quadratic(A @ A.transpose(1, 2) + torch.eye(P, dtype=F64), torch.randn(M, P, generator=gen(3), dtype=F64))
    H = ls.loss_hessian(model, lambda m: m.loss())
    expected = torch.zeros(M, P + 2, P + 2, dtype=F64)
    expected[:, :P, :P] = model.Q
    assert H.shape == (M, P + 2, P + 2)
    assert rel(H, expected) < 1e-12
    assert rel(ls.loss_hessian(model, lambda m: m.loss(), vectorize=False), expected) < 1e-12


class Unit1D(nn.Module):
    def __init__(self, lam: torch.Tensor) -> None:
        super().__init__()
        self.lam = nn.Parameter(lam.clone())


def test_hessian_of_1d_teacher_student_loss_matches_closed_form():
    # Ground truth (the book's page 'Methods and reference values'): at the optimum the Hessian
    # of the 1-D teacher-student loss is (1 + l^2)/(1 - l^2)^3, e.g. 251 263 at 0.99. Relative
    # 1e-9 (the loss has 1/(1-l^2) terms that cancel at the optimum; round-off grows with
    # 1/(1-l)^3).
    lam_star = torch.tensor([0.5, 0.9, 0.99], dtype=F64)
    model = Unit1D(lam_star)
    H = ls.loss_hessian(model, lambda m: th.teacher_student_loss(m.lam, lam_star))
    assert rel(H[:, 0, 0], th.teacher_student_hessian_at_optimum(lam_star)) < 1e-9
    assert abs(H[2, 0, 0].item() - 251263) < 1.0


def _grad_flat(model, loss_fn):
    loss = loss_fn(model).sum()
    return torch.cat([g.reshape(g.shape[0], -1) for g in torch.autograd.grad(loss, list(model.parameters()))], 1)


@pytest.mark.parametrize("kind", ["dense", "diagonal", "lru"])
def test_hessian_matches_finite_differences_of_gradient(kind):
    # At a student's random initialization (loss far from zero): column j of the Hessian = (g(theta + h e_j) -
    # g(theta - h e_j)) / 2h with the autograd gradient g, h = 1e-5 -> relative error ~1e-8.
    teacher = ls.make_landscape_teacher(3)
    model = {"dense": lambda: DenseRNN([2], 4, r_max=0.95),
             "diagonal": lambda: ComplexDiagonalRNN([2], 4, r_min=0.5, r_max=0.95),
             "lru": lambda: LRU([2], 4, r_min=0.5, r_max=0.95)}[kind]()
    x = torch.randn(4, 60, 1, generator=gen(5), dtype=F64)
    loss_fn = ls.mse_loss_fn(x, teacher.outputs(x), method="time")
    H = ls.loss_hessian(model, loss_fn)[0]
    layout, theta = ls.flat_parameters(model)
    h = 1e-5
    cols = []
    for j in range(layout.size):
        for sign in (1, -1):
            th_j = theta.clone()
            th_j[0, j] += sign * h
            with torch.no_grad():
                for name, val in layout.unflatten(th_j).items():
                    getattr(model, name).copy_(val)
            cols.append(_grad_flat(model, loss_fn)[0])
    fd = torch.stack([(cols[2 * j] - cols[2 * j + 1]) / (2 * h) for j in range(layout.size)], dim=1)
    assert rel(H, fd) < 1e-6


@pytest.mark.parametrize("kind", ["dense", "diagonal", "lru"])
def test_students_at_teacher_reach_zero_loss_and_hessian_is_gauss_newton(kind):
    # At the teacher the residuals vanish, so the Hessian of 1/2 mean r^2 equals J^T J / R
    # (first derivatives only); time-domain and kernel (FFT) losses give the same Hessian.
    teacher = ls.make_landscape_teacher(0)
    x = torch.randn(8, 300, 1, generator=gen(1), dtype=F64)
    y = teacher.outputs(x)
    model = ls.student_at_teacher(kind, teacher)
    assert ls.mse_loss_fn(x, y)(model).item() < 1e-22
    # one member per teacher: each member reproduces its own teacher
    others = [ls.make_landscape_teacher(s) for s in (5, 6)]
    batched = ls.student_at_teacher(kind, [teacher] + others)
    ys = torch.stack([y] + [t.outputs(x) for t in others])
    assert float(ls.mse_loss_fn(x, ys)(batched).max()) < 1e-22
    H_time = ls.loss_hessian(model, ls.mse_loss_fn(x, y, method="time"))
    H_kernel = ls.loss_hessian(model, ls.mse_loss_fn(x, y, method="kernel"))
    GN = ls.gauss_newton(model, lambda m: (m(x) - y).reshape(m.n_members, -1))
    assert rel(H_time, GN) < 1e-8
    assert rel(H_kernel, GN) < 1e-8


def test_landscape_teacher_has_conjugate_pairs_in_the_ring():
    t = ls.make_landscape_teacher(4, hidden=6, nu_min=0.99, nu_max=0.993)
    lam = torch.linalg.eigvals(t.A)
    assert bool((lam.abs() >= 0.99 - 1e-12).all()) and bool((lam.abs() <= 0.993 + 1e-12).all())
    assert torch.allclose(torch.sort(lam.real).values, torch.sort(t.eigvals.real).values, atol=1e-10)
    assert bool((t.eigvals[:3] == t.eigvals[3:].conj()).all())
    A_rec = t.eigvecs @ torch.diag(t.eigvals) @ torch.linalg.inv(t.eigvecs)
    assert float(A_rec.imag.abs().max()) < 1e-12 and rel(A_rec.real, t.A) < 1e-12
    with pytest.raises(ValueError, match="even"):
        ls.make_landscape_teacher(0, hidden=3)


def test_flat_layout_groups_and_labels():
    model = ComplexDiagonalRNN([0, 1], 3)
    layout, theta = ls.flat_parameters(model)
    assert theta.shape == (2, 6 * 3 + 1) and layout.size == 19
    idx = torch.cat(list(layout.group_index().values()))
    assert sorted(idx.tolist()) == list(range(19))  # every coordinate in exactly one group
    assert layout.labels()[:2] == ["lam_re[0]", "lam_re[1]"] and layout.labels()[-1] == "D"
    back = layout.unflatten(theta)
    assert torch.equal(back["C_im"], model.C_im.detach())
    bad = nn.Module()
    bad.p = nn.Parameter(torch.zeros(()))
    with pytest.raises(ValueError, match="member axis"):
        ls.flat_parameters(bad)


def test_concentration_measures_on_known_vectors():
    P = 10
    e1 = torch.zeros(P, dtype=F64)
    e1[3] = -2.0
    flat = torch.ones(P, dtype=F64)
    three = torch.zeros(P, dtype=F64)
    three[[0, 4, 9]] = torch.tensor([1.0, -1.0, 1.0], dtype=F64)
    V = torch.stack([e1, flat, three], dim=1)  # columns
    pr = ls.participation_ratio(V, dim=0)
    assert torch.allclose(pr, torch.tensor([1.0, P, 3.0], dtype=F64))
    assert torch.allclose(ls.top_mass(V, 1, dim=0), torch.tensor([1.0, 1 / P, 1 / 3], dtype=F64))
    assert torch.allclose(ls.top_mass(V, 3, dim=0), torch.tensor([1.0, 3 / P, 1.0], dtype=F64))
    gm = ls.group_mass(V, {"a": torch.arange(0, 5), "b": torch.arange(5, 10)}, dim=0)
    assert torch.allclose(gm["a"] + gm["b"], torch.ones(3, dtype=F64))
    assert torch.allclose(gm["a"], torch.tensor([1.0, 0.5, 2 / 3], dtype=F64))
    with pytest.raises(ValueError):
        ls.participation_ratio(torch.zeros(4))
    with pytest.raises(ValueError, match="m must be"):
        ls.top_mass(flat, 0)


def test_hessian_eigen_orders_descending():
    H = torch.diag(torch.tensor([1.0, 5.0, 3.0], dtype=F64))
    w, V = ls.hessian_eigen(H)
    assert torch.allclose(w, torch.tensor([5.0, 3.0, 1.0], dtype=F64))
    assert torch.allclose(V[:, 0].abs(), torch.tensor([0.0, 1.0, 0.0], dtype=F64))


@pytest.mark.parametrize("c,steps", [(0.3, 50), (2.0, 3000), (1e-4, 2000)])
def test_effective_learning_rate_is_torch_adams_update_of_a_unit_gradient(c, steps):
    # Ground truth: torch.optim.Adam (independent implementation, eps outside the sqrt like
    # optax). After `steps` constant gradients c, one more step with gradient 1 moves the
    # parameter by exactly the effective learning rate. Constant gradients also give v in
    # closed form: v_t = c^2 (1 - b2^t).
    lr = 1e-3
    p = nn.Parameter(torch.zeros(1, dtype=F64))
    opt = torch.optim.Adam([p], lr=lr, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(steps):
        p.grad = torch.full_like(p, c)
        opt.step()
    st = opt.state[p]
    m, v = st["exp_avg"].clone(), st["exp_avg_sq"].clone()
    assert torch.allclose(v, torch.tensor([c * c * (1 - 0.999**steps)], dtype=F64), rtol=1e-12)
    eta = ls.effective_learning_rates(m, v, steps, lr)
    before = p.detach().clone()
    p.grad = torch.ones_like(p)
    opt.step()
    assert rel(before - p.detach(), eta) < 1e-10


def test_adam_ceiling_is_sqrt10_lr():
    # m = v = 0 (no gradient ever): lr (1 - b1) / sqrt(1 - b2) = sqrt(10) lr for large t.
    z = torch.zeros(3, dtype=F64)
    eta = ls.effective_learning_rates(z, z, 10_000, 1e-3)
    assert torch.allclose(eta, torch.full_like(z, ls.adam_ceiling(1e-3, 10_000)), rtol=1e-14)
    assert abs(ls.adam_ceiling(1e-3, 10_000) / (math.sqrt(10) * 1e-3) - 1) < 1e-4
    with pytest.raises(ValueError, match="step"):
        ls.effective_learning_rates(z, z, -1, 1e-3)


def test_train_keep_adam_state_matches_torch_adam_and_shares_batches():
    # Ground truth: the same student trained by a plain loop with torch.optim.Adam on the same
    # batches (same generator, same exact quadratic-form loss): parameters and Adam moments
    # agree to round-off after 6 steps. Training two students together (shared batches) gives
    # each exactly its solo run.
    teacher = make_teacher(0, 0.9)
    steps, B, T = 6, 8, 40
    solo = ls.train_keep_adam_state(DenseRNN([3], 6), teacher, lr=1e-2, steps=steps, data_seed=11, batch_size=B, seq_len=T)
    ref = DenseRNN([3], 6)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(11)
    K, D, idx = teacher.kernel(T)[None], teacher.D.reshape(1), torch.zeros(1, dtype=torch.long)
    for _ in range(steps):
        x = torch.randn(1, B, T, generator=g, dtype=F64)
        loss = quadratic_loss(kernel_error(ref, K, D, idx, T), lagged_gram(x), idx, B * T).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert rel(solo.model.A.detach(), ref.A.detach()) < 1e-10
    assert rel(solo.v["A"], opt.state[ref.A]["exp_avg_sq"]) < 1e-10
    both = ls.train_keep_adam_state([DenseRNN([3], 6), LRU([1], 4, r_min=0.5)], teacher, lr=1e-2, steps=steps,
                                    data_seed=11, batch_size=B, seq_len=T, record_every=3)
    assert rel(both[0].model.A.detach(), solo.model.A.detach()) < 1e-12
    lru_solo = ls.train_keep_adam_state(LRU([1], 4, r_min=0.5), teacher, lr=1e-2, steps=steps, data_seed=11,
                                        batch_size=B, seq_len=T)
    assert rel(both[1].model.lam_mag.detach(), lru_solo.model.lam_mag.detach()) < 1e-12
    assert [s for s, _ in both[1].history] == [3, 6]
    eff = both[1].effective_learning_rates()
    assert torch.allclose(eff["lam_mag"], both[1].history[-1][1]["lam_mag"])
    with pytest.raises(ValueError, match="schedule"):
        ls.train_keep_adam_state(DenseRNN([0], 2), teacher, lr=1e-3, steps=1, data_seed=0, schedule="step")
    # the final-loss windows are plain means of the recorded batch losses (last 10 % and the 10 % before)
    solo.losses = torch.arange(20, dtype=F64).reshape(2, 10)
    last, before = solo.final_losses(0.1)
    assert last.tolist() == [9.0, 19.0] and before.tolist() == [8.0, 18.0]
    last, before = solo.final_losses(0.5)
    assert last.tolist() == [7.0, 17.0] and before.tolist() == [2.0, 12.0]
    with pytest.raises(ValueError, match="fraction"):
        solo.final_losses(0.8)


def test_loss_trend_is_the_least_squares_line_through_the_log_loss():
    run = ls.AdamRun(losses=torch.zeros(1, 1), m={}, v={}, step=0, lr=torch.zeros(1), diverged=torch.zeros(1, dtype=torch.bool),
                     betas=(0.9, 0.999), eps=1e-8, model=None, history=[])
    n, t = 2000, torch.arange(2000, dtype=F64)
    # exact exponentials: halving every 100 steps (so 4x over a tenth of 2000 steps), and flat
    run.losses = torch.stack([torch.exp(-math.log(2) * t / 100), torch.full((n,), 3e-6, dtype=F64)])
    assert run.loss_trend(0.5, 0.1).tolist() == pytest.approx([0.25, 1.0], rel=1e-10)
    # any series: numpy's polyfit over the last half, independently
    g = torch.Generator().manual_seed(0)
    noisy = torch.exp(torch.randn(3, n, generator=g, dtype=F64) - 1e-3 * t)
    run.losses = noisy
    want = [math.exp(np.polyfit(np.arange(n // 2), np.log(row[-n // 2:].numpy()), 1)[0] * 0.1 * n) for row in noisy]
    assert run.loss_trend().tolist() == pytest.approx(want, rel=1e-9)
    # a flat floor with two 1000x spikes in its last tenth: the window means differ ~3x, the trend barely moves
    spiky = torch.full((1, n), 1e-6, dtype=F64)
    spiky[0, -50], spiky[0, -20] = 1e-3, 1e-3
    run.losses = spiky
    last, before = run.final_losses(0.1)
    assert (last / before).item() > 2.9
    assert 0.9 < run.loss_trend().item() < 1.1
    # a loss that is not finite (a diverged member) gives NaN; bad arguments are refused
    run.losses = torch.cat([noisy[:1], noisy[:1].clone().index_fill_(1, torch.tensor([n - 3]), float("nan"))])
    trend = run.loss_trend()
    assert math.isfinite(trend[0].item()) and math.isnan(trend[1].item())
    for bad in (dict(fraction=0.0), dict(fraction=1.5), dict(per=0.0)):
        with pytest.raises(ValueError, match="fraction"):
            run.loss_trend(**bad)
    run.losses = torch.ones(1, 3)
    with pytest.raises(ValueError, match="too few"):
        run.loss_trend(0.5)


def test_eigenvector_concentration_of_coordinate_and_spread_vectors():
    from floss_utils.curse_of_memory.landscape import eigenvector_concentration

    P = 8
    diag = torch.diag(torch.arange(P, 0, -1, dtype=F64))[None]  # eigenvectors = coordinate vectors
    eye = torch.eye(P, dtype=F64)[None]
    A = torch.eye(P, dtype=F64)
    A[:, 0] = 1.0
    spread = torch.linalg.qr(A)[0][None]  # first column (1, ..., 1) / sqrt(P), up to sign
    c_diag = eigenvector_concentration(diag, eye, k_top=3, m=2)
    assert c_diag["PR top-3 (mean)"].item() == pytest.approx(1.0)
    assert c_diag["top-2 mass of top-2 vectors"].item() == pytest.approx(1.0)
    assert c_diag[f"|H|^2 on {P} largest entries"].item() == pytest.approx(1.0)  # a diagonal matrix
    c_sp = eigenvector_concentration(torch.ones(1, P, P, dtype=F64), spread, k_top=1, m=2, n_entries=P)
    # the first column of Q is (1, ..., 1)/sqrt(P) up to sign: PR = P, top-2 mass = 2/P; H = ones spreads evenly
    assert c_sp["PR top-1 (mean)"].item() == pytest.approx(P)
    assert c_sp[f"|H|^2 on {P} largest entries"].item() == pytest.approx(P / P**2)


def test_eigenvalue_condition_numbers_bound_the_first_order_eigenvalue_shift():
    # ground truths: kappa = 1 for a normal matrix; for a non-normal one, a rank-one perturbation of
    # norm eps along the left/right eigenvectors moves the eigenvalue by kappa * eps (first order:
    # finite difference with eps = 1e-7, error O(eps) relative)
    Q, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen(3), dtype=F64))
    normal = Q @ torch.diag(torch.arange(1.0, 6.0, dtype=F64)) @ Q.T
    _, Vn = torch.linalg.eig(normal)
    assert torch.allclose(ls.eigenvalue_condition_numbers(Vn), torch.ones(5, dtype=F64), atol=1e-10)
    A = torch.randn(4, 4, generator=gen(4), dtype=F64) + 3 * torch.triu(torch.ones(4, 4, dtype=F64), 1)
    lam, V = torch.linalg.eig(A)
    kappa = ls.eigenvalue_condition_numbers(V)
    assert bool((kappa >= 1 - 1e-12).all())
    Vi = torch.linalg.inv(V)
    eps = 1e-7
    for k in range(4):
        y, x = Vi[k, :].conj(), V[:, k].conj()  # dA = eps y x^T / (|y||x|): V^-1[k,:] dA V[:,k] = eps |y||x|
        dA = eps * torch.outer(y, x) / (y.norm() * x.norm())
        lam2 = torch.linalg.eigvals(A.to(dA.dtype) + dA)
        shift = (lam2 - lam[k]).abs().min()
        assert abs(shift.item() / eps - kappa[k].item()) < 1e-4 * kappa[k].item()


def test_effective_lr_contrast_by_hand():
    # Every value of the first sample above every value of the second (3 vs 3): the exact one-sided
    # rank test's p is 1 / C(6, 3) = 1/20, the smallest it can be; the ratio is of the medians.
    ratio, p = ls.effective_lr_contrast([0.5, 0.4, 0.3], [0.001, 0.004, 0.002])
    assert ratio == pytest.approx(0.4 / 0.002) and p == pytest.approx(1 / 20)
    # 7 of the 9 pairs favour the first sample: 4 of the 20 equally likely rank splits have U >= 7 (U = 9, 8, 7, 7)
    _, p = ls.effective_lr_contrast([0.5, 0.4, 0.0015], [0.001, 0.004, 0.002])
    assert p == pytest.approx(4 / 20)
    with pytest.raises(ValueError, match="finite"):
        ls.effective_lr_contrast([], [1.0])


def test_memory_control_against_gauss_newton_by_hand_and_the_equal_memory_limit():
    # Ground truths: (1) at the optimum the Hessian is J^T J / R (first derivatives only), so the
    # short teachers' top eigenvalue is checked against the Gauss-Newton matrix of teachers redrawn
    # here by hand; (2) the loss scale is 1/2 mean(y^2) of those teachers' outputs; (3) redrawing
    # with the long teachers' own moduli is the identity: every gain is exactly 1.
    teachers = [ls.make_landscape_teacher(s) for s in (0, 3)]
    x = torch.randn(4, 200, 1, generator=gen(2), dtype=F64)
    mc = ls.memory_control(teachers, x, nu_min=0.5, nu_max=0.503)
    short = [ls.make_landscape_teacher(s, nu_min=0.5, nu_max=0.503) for s in (0, 3)]
    ys = torch.stack([t.outputs(x) for t in short])
    assert rel(mc.scale_short, 0.5 * (ys**2).mean(dim=(1, 2, 3))) < 1e-12
    for kind in ("dense", "diagonal"):
        model = ls.student_at_teacher(kind, short)
        GN = ls.gauss_newton(model, lambda m: (m(x) - ys).reshape(m.n_members, -1))
        assert rel(mc.top_short[kind], torch.linalg.eigvalsh(GN)[:, -1]) < 1e-8
        by_hand = mc.top_long[kind] / mc.top_short[kind] * mc.scale_short / mc.scale_long
        assert rel(mc.relative_gain()[kind], by_hand) < 1e-12
        assert bool((mc.gain()[kind] > 1).all())  # long memory is the sharper (chapter 6's claim, here one draw)
    same = ls.memory_control(teachers, x, nu_min=0.99, nu_max=0.993, top_long=mc.top_long)
    for kind in ("dense", "diagonal"):
        assert rel(same.gain()[kind], torch.ones(2, dtype=F64)) < 1e-10
        assert rel(same.relative_gain()[kind], torch.ones(2, dtype=F64)) < 1e-10
    with pytest.raises(ValueError, match="nu_min"):
        ls.memory_control(teachers, x, nu_min=0.6, nu_max=0.5)
    with pytest.raises(ValueError, match="top_long"):
        ls.memory_control(teachers, x, top_long={"dense": mc.top_long["dense"]})
    with pytest.raises(TypeError, match="Teachers"):
        ls.memory_control([], x)


def test_numerical_rank_of_a_known_rank_matrix_with_round_off():
    # H = Q diag(1e6, 1e3, 1, 0, 0) Q^T, computed twice with independent perturbations of size 1e-9:
    # three eigenvalues stand far above the Weyl bound ||H - other|| ~ 1e-9, the two zeros do not
    Q = torch.linalg.qr(torch.randn(5, 5, generator=gen(1), dtype=F64))[0]
    exact = Q @ torch.diag(torch.tensor([1e6, 1e3, 1.0, 0.0, 0.0], dtype=F64)) @ Q.T
    E1, E2 = (1e-9 * torch.randn(5, 5, generator=gen(k), dtype=F64) for k in (2, 3))
    H, other = exact + E1 + E1.T, exact + E2 + E2.T
    rank, noise = ls.numerical_rank(torch.stack([H, exact]), torch.stack([other, exact]))
    assert rank.tolist() == [3, 3]
    assert 1e-10 < float(noise[0]) < 1e-7  # the perturbations' size, plus P eps ||H|| ~ 1e-9
    assert float(noise[1]) == pytest.approx(5 * torch.finfo(F64).eps * 1e6, rel=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        ls.numerical_rank(H, other[:4, :4])


def test_second_moment_lag_behind_a_geometric_fall_is_one_over_one_minus_ln_f():
    # chapter 6's convergence criterion: if the squared gradients fall by f per Adam memory 1/(1 - b2) = 1000 steps,
    # Adam's v (run through the library's own update) exceeds the current squared gradient by about 1/(1 - ln f)
    from floss_utils.optim import adam_update
    steps, tau = 20_000, 1000
    for f in (2.0, 1.5, 0.5):
        p, m, v = torch.zeros(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64)
        g2 = None
        for t in range(1, steps + 1):
            g2 = f ** (-t / tau)
            adam_update([p], [torch.full((1, 1), math.sqrt(g2), dtype=F64)], [m], [v], lr=0.0,
                        steps=torch.tensor([t]), mask=torch.tensor([True]))
        v_hat = v.item() / (1 - 0.999 ** steps)
        assert v_hat / g2 == pytest.approx(1 / (1 - math.log(f)), rel=0.01)
    assert (1 / (1 - math.log(2))) ** 0.5 == pytest.approx(1.8, abs=0.01)  # the chapter's "about 1.8"
