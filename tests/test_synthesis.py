"""Part IV measurements: Lanczos sharpness, self-teacher losses, flossing a diagonal recurrence.

Ground truths: dense eigen-decompositions (``torch.linalg.eigvalsh``) of Hessians built by
reverse-over-reverse autograd (``torch.autograd.functional.hessian``), independent of the
forward-over-reverse products Lanczos uses; the closed-form exponents ``ln|lambda_i|`` of a
diagonal linear map and the determinant sum rule; ZO's closed-form white-noise Hessian
``(1 + nu^2)/(1 - nu^2)^3`` (with its normalized and exp-parametrized variants) by Monte Carlo;
members run one by one. Float64 throughout. Each test states its tolerance.
"""

from __future__ import annotations

import math

import numpy as np

import pytest
import torch

from floss_utils.curse_of_memory.landscape import effective_learning_rates
from floss_utils.flossing.tanh_network import init_gf_networks
from floss_utils.synthesis.diagonal import (DiagonalPopulation, diagonal_block_matrix,
                                            diagonal_exponents, diagonal_self_teacher_loss,
                                            floss_diagonal, init_diagonal_population,
                                            white_noise_hessian_1d)
from floss_utils.synthesis.self_teacher import (SHARP_BITS, adam_self_teacher_run, gain, gf_self_teacher_loss, task_bits,
                                                with_gain)
from floss_utils.synthesis.curvature import lanczos_top_eigenvalue, sharpness

from conftest import F64


def dense_hessians(f, theta: torch.Tensor) -> torch.Tensor:
    """(M, P, P) by reverse-over-reverse autograd, one member at a time."""
    M = theta.shape[0]
    out = []
    for m in range(M):
        def fm(x, m=m):
            th = torch.cat([theta[:m], x.unsqueeze(0), theta[m + 1:]])
            return f(th)[m]
        out.append(torch.autograd.functional.hessian(fm, theta[m]))
    return torch.stack(out)


def test_lanczos_full_krylov_is_exact():
    # iters = P: the tridiagonal matrix is similar to A; 1e-9 relative covers round-off
    A = torch.randn(4, 12, 12, dtype=F64, generator=torch.Generator().manual_seed(0))
    A = A + A.mT
    top = lanczos_top_eigenvalue(lambda v: (A @ v.unsqueeze(-1)).squeeze(-1),
                                 torch.randn(4, 12, dtype=F64, generator=torch.Generator().manual_seed(1)), 12)
    assert torch.allclose(top, torch.linalg.eigvalsh(A)[:, -1], rtol=1e-9)


def test_lanczos_few_iterations_with_a_gap():
    # a top eigenvalue 10x above the rest converges in a few iterations; 20 of 200 reach 1e-8
    g = torch.Generator().manual_seed(2)
    Q, _ = torch.linalg.qr(torch.randn(3, 200, 200, dtype=F64, generator=g))
    ev = torch.rand(3, 200, dtype=F64, generator=g)
    ev[:, 0] = torch.tensor([10.0, 20.0, 30.0], dtype=F64)
    A = Q @ torch.diag_embed(ev) @ Q.mT
    top = lanczos_top_eigenvalue(lambda v: (A @ v.unsqueeze(-1)).squeeze(-1),
                                 torch.randn(3, 200, dtype=F64, generator=g), 20)
    assert torch.allclose(top, ev[:, 0], rtol=1e-8)


def test_lanczos_invariant_subspace_restart():
    # a diagonal operator started on a vector spanning only 2 eigenvectors hits beta = 0; the
    # restart must still find the true top (5.0), exactly (1e-12)
    d = torch.tensor([[1.0, 2.0, 5.0, 3.0]], dtype=F64)
    v0 = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=F64)
    top = lanczos_top_eigenvalue(lambda v: d * v, v0, 4)
    assert abs(top.item() - 5.0) < 1e-12


def test_gf_self_teacher_sharpness_matches_dense_hessian():
    # Lanczos with iters = P on jvp-of-grad vs eigvalsh of the autograd Hessian: 1e-8 relative
    net = init_gf_networks([0, 1], 5, 2)
    bits = task_bits([0, 1], 20, 0, 15, 2)
    f, th = gf_self_teacher_loss(net, ("J", "W_s"), bits, burn_in=3)
    assert torch.allclose(f(th), torch.zeros(2, dtype=F64), atol=0)  # zero at the teacher
    H = dense_hessians(f, th)
    s = sharpness(f, th, iters=th.shape[1])
    assert torch.allclose(s, torch.linalg.eigvalsh(H)[:, -1], rtol=1e-8)
    # at the optimum the Hessian is a Gauss-Newton matrix: positive semi-definite
    assert torch.linalg.eigvalsh(H)[:, 0].min() > -1e-10 * s.max()
    # a mask gives the top eigenvalue of the principal sub-matrix (the J block)
    mask = torch.arange(th.shape[1]) < 25
    sJ = sharpness(f, th, iters=25, mask=mask)
    assert torch.allclose(sJ, torch.linalg.eigvalsh(H[:, :25, :25])[:, -1], rtol=1e-8)


@pytest.mark.parametrize("param", ["polar", "exp", "exp_opt"])
@pytest.mark.parametrize("normalized", [False, True])
def test_diagonal_sharpness_matches_dense_hessian(param, normalized):
    # complex diagonal scan under jvp-of-grad vs autograd Hessian: 1e-8 relative
    pop = init_diagonal_population([3, 4], 3)
    x = torch.randn(2, 3, 40, dtype=F64, generator=torch.Generator().manual_seed(5))
    f, th = diagonal_self_teacher_loss(pop, x, parametrization=param, normalized=normalized, burn_in=10)
    H = dense_hessians(f, th)
    assert torch.allclose(sharpness(f, th, iters=6), torch.linalg.eigvalsh(H)[:, -1], rtol=1e-8)


def test_block_matrix_acts_like_complex_multiplication():
    # exact up to round-off (1e-14)
    lam = torch.polar(torch.tensor([[0.5, 0.9]], dtype=F64), torch.tensor([[0.3, 2.0]], dtype=F64))
    h = torch.tensor([[0.7 - 0.2j, -1.1 + 0.4j]], dtype=torch.complex128)
    W = diagonal_block_matrix(lam)
    hr = torch.view_as_real(h).reshape(1, 4)
    out = (W @ hr.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(out, torch.view_as_real(lam * h).reshape(1, 4), atol=1e-14)


def test_diagonal_exponents_closed_form():
    # QR estimator on the 2n-dim real form: ln|lambda_i| each twice; the 1/T bias of the basis
    # transient is O(1/T): 3000 steps -> within 3e-3; the sum equals ln|det| = 2 sum ln|lambda| to 1e-10
    pop = init_diagonal_population([0, 1], 4)
    ex = diagonal_exponents(pop.lam, steps=3000)
    closed = torch.sort(torch.log(pop.nu).repeat_interleave(2, -1), descending=True).values
    assert (ex - closed).abs().max() < 3e-3
    assert torch.allclose(ex.sum(-1), closed.sum(-1), atol=1e-10)


def test_floss_diagonal_reaches_targets_in_closed_form():
    # 120 Adam steps at lr 0.02 from |lambda| in [0.2, 0.8): every ln|lambda_i| within 0.02 of its target
    seeds = [0, 1, 2]
    pop = init_diagonal_population(seeds, 3)
    flossed, hist = floss_diagonal(pop, seeds, [-0.05, -0.3, -1.0], steps=120, lr=0.02)
    err = (torch.log(flossed.nu) - torch.tensor([-0.05, -0.3, -1.0], dtype=F64)[:, None]).abs()
    assert err.max() < 0.02
    assert bool((hist[-1] < hist[0]).all())
    assert torch.equal(flossed.theta, pop.theta) and torch.equal(flossed.B, pop.B)
    with pytest.raises(ValueError, match="targets < 0"):
        floss_diagonal(pop, seeds, [0.0, -0.3, -1.0], steps=1, lr=0.02)


@pytest.mark.parametrize("param,normalized", [("polar", False), ("polar", True), ("exp", True)])
def test_white_noise_hessian_closed_form_by_monte_carlo(param, normalized):
    # one real unit (theta = 0, B = C = 1), white noise: magnitude Hessian at the optimum vs ZO's
    # closed form. 2048 sequences x 200 scored steps (correlation time ~1/(1-nu^2) ~ 3 steps):
    # Monte Carlo error ~1 %; tolerance 5 %
    nu = torch.tensor([[0.8]], dtype=F64)
    pop = DiagonalPopulation(nu=nu, theta=torch.zeros_like(nu), B=torch.ones(1, 1, dtype=torch.complex128),
                             C=torch.ones(1, 1, dtype=torch.complex128))
    x = torch.randn(1, 2048, 300, dtype=F64, generator=torch.Generator().manual_seed(7))
    f, th = diagonal_self_teacher_loss(pop, x, parametrization=param, normalized=normalized, burn_in=100)
    mag = torch.tensor([True, False])
    s = sharpness(f, th, iters=1, mask=mag)
    ref = white_noise_hessian_1d(0.8, param, normalized)
    assert abs(s.item() / ref.item() - 1) < 0.05


def test_adam_self_teacher_run_members_independent_and_learning():
    # an ensemble equals its members run alone (1e-12), the loss falls, and effective learning
    # rates never exceed Adam's ceiling sqrt(10) lr at large t (here bias-corrected: < 1.001 lr)
    net = init_gf_networks([0, 1], 6, 2)
    run = adam_self_teacher_run(net, [0, 1], steps=30, lr=3e-3, perturbation=0.3, seq_len=20, burn_in=5)
    alone = adam_self_teacher_run(net.select([1]).to(F64), [1], steps=30, lr=3e-3, perturbation=0.3,
                                  seq_len=20, burn_in=5)
    assert torch.allclose(run.v[1], alone.v[0], rtol=1e-12, atol=1e-300)
    assert bool((run.losses[-5:].mean(0) < run.losses[:5].mean(0)).all())
    eta = effective_learning_rates(run.m, run.v, run.steps, run.lr)
    assert eta.max() < 1.001 * 3e-3


def test_adam_self_teacher_run_at_the_teacher_reads_only_the_label_noise():
    # closed forms at the teacher (perturbation 0): without label noise the loss, gradient and
    # drift are exactly 0 and every effective learning rate is Adam's ceiling; with noise sigma
    # the first gradient is linear in sigma (the residual is pure noise), so Adam's first second
    # moment (1 - b2) g^2 scales as sigma^2
    from floss_utils.curse_of_memory.landscape import adam_ceiling

    net = init_gf_networks([0, 1], 6, 2, dtype=F64)
    quiet = adam_self_teacher_run(net, [0, 1], steps=5, lr=1e-3, seq_len=20, burn_in=5)
    assert torch.equal(quiet.v, torch.zeros_like(quiet.v)) and torch.equal(quiet.drift, torch.zeros(2, dtype=F64))
    eta = effective_learning_rates(quiet.m, quiet.v, quiet.steps, quiet.lr)
    assert torch.allclose(eta, torch.full_like(eta, adam_ceiling(1e-3, 5)), rtol=1e-12)
    one = adam_self_teacher_run(net, [0, 1], steps=1, lr=1e-3, label_noise=1.0, seq_len=20, burn_in=5)
    two = adam_self_teacher_run(net, [0, 1], steps=1, lr=1e-3, label_noise=2.0, seq_len=20, burn_in=5)
    assert bool((one.v > 0).any())
    assert torch.allclose(two.v, 4 * one.v, rtol=1e-10, atol=1e-300)
    noisy = adam_self_teacher_run(net, [0, 1], steps=5, lr=1e-3, label_noise=1.0, seq_len=20, burn_in=5)
    assert bool((noisy.drift > 0).all())
    with pytest.raises(ValueError, match="label_noise"):
        adam_self_teacher_run(net, [0, 1], steps=5, lr=1e-3, label_noise=-1.0, seq_len=20)
    with pytest.raises(ValueError, match="burn_in"):
        adam_self_teacher_run(net, [0, 1], steps=5, lr=1e-3, seq_len=20, burn_in=20)


def test_bad_inputs_are_refused():
    net = init_gf_networks([0], 4, 2)
    with pytest.raises(ValueError, match="bits"):
        gf_self_teacher_loss(net, ("J",), torch.zeros(10, 1, 3), 0)
    with pytest.raises(ValueError, match="iters"):
        lanczos_top_eigenvalue(lambda v: v, torch.ones(1, 3), 4)
    pop = init_diagonal_population([0], 2)
    with pytest.raises(ValueError, match="parametrization"):
        diagonal_self_teacher_loss(pop, torch.zeros(1, 2, 5), parametrization="tanh", normalized=False)
    with pytest.raises(ValueError, match="r_min"):
        init_diagonal_population([0], 2, r_min=0.9, r_max=0.5)


def test_with_gain_rescales_only_j_to_the_target_gain():
    net = init_gf_networks([0, 1, 2], 12, 2, dtype=F64)
    g = gain(net)
    by_hand = torch.stack([net.J[m].norm() / 12**0.5 for m in range(3)])
    assert torch.allclose(g, by_hand, rtol=1e-14)
    target = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    out = with_gain(net, target)
    assert torch.allclose(gain(out), target, rtol=1e-13)
    for m in range(3):  # same direction: J scaled by one positive number per member
        assert torch.allclose(out.J[m], net.J[m] * target[m] / g[m], rtol=1e-13)
    for name in ("W_s", "b", "w_r", "c", "x0"):
        assert torch.equal(getattr(out, name), getattr(net, name))
    assert torch.equal(gain(net), g)  # the input is left alone
    with pytest.raises(ValueError, match="one target gain per member"):
        with_gain(net, [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        with_gain(net, [1.0, 0.0, 2.0])


def test_with_memory_recovers_a_known_scale():
    # targets made by hand: lambda_1 of each network with J scaled by a known s* (same bits and
    # basis as with_memory uses); the scan and bisection must find s* again (each s* is the first
    # upward crossing of its value on [0.25, 4], checked on a grid: lambda_1 is not monotone in s for
    # these small driven networks) and leave every other parameter alone
    from floss_utils.flossing import evaluate_exponents
    from floss_utils.synthesis import with_memory

    net = init_gf_networks([0, 1, 2], 12, 2, dtype=F64)
    seeds, s_star = [0, 1, 2], torch.tensor([0.7, 1.3, 1.6], dtype=F64)
    scaled = net.clone()
    scaled.J.mul_(s_star[:, None, None])
    target = evaluate_exponents(scaled, seeds, steps=200, k=1, key=1)[:, 0]
    out, s = with_memory(net, target, seeds, steps=200, key=1)
    assert torch.allclose(s, s_star, rtol=1e-6)
    assert torch.allclose(evaluate_exponents(out, seeds, steps=200, k=1, key=1)[:, 0], target, atol=1e-6)
    for name in ("W_s", "b", "w_r", "c", "x0"):
        assert torch.equal(getattr(out, name), getattr(net, name))
    # an unreachable target (lambda_1 = 5 per step): no scale, J left as it was
    out, s = with_memory(net, [5.0, target[1], 5.0], seeds, steps=200, key=1)
    assert torch.isnan(s[0]) and torch.isnan(s[2]) and torch.allclose(s[1], s_star[1], rtol=1e-6)
    assert torch.equal(out.J[0], net.J[0]) and torch.equal(out.J[2], net.J[2])
    with pytest.raises(ValueError, match="finite target"):
        with_memory(net, [0.0, float("nan"), 0.0], seeds, steps=200)


def test_with_memory_refuses_bad_brackets():
    from floss_utils.synthesis import with_memory

    net = init_gf_networks([0], 6, 2, dtype=F64)
    with pytest.raises(ValueError, match="rounds"):
        with_memory(net, [0.0], [0], steps=50, rounds=-1)
    with pytest.raises(ValueError, match="lo < hi"):
        with_memory(net, [0.0], [0], steps=50, lo=2.0, hi=1.0)


def _flossed_pair(seeds, N=8, k=4):
    from floss_utils.flossing import Flosser, FlossingConfig, evaluate_exponents

    unflossed = init_gf_networks(seeds, N, 2, dtype=F64)
    flossed = unflossed.clone()
    fc = FlossingConfig(k=k, steps=30, lr=0.02, ons=3)
    Flosser(flossed, fc, seeds, targets=[0.0] * len(seeds)).run(25)
    flossed = flossed.clone()
    lam1 = evaluate_exponents(flossed, seeds, steps=150, k=k, key=1)[:, 0]
    return unflossed, flossed, lam1, fc


def test_self_teacher_controls_match_gain_and_memory_and_freeze_the_rest():
    # ground truths: each matched-gain network has the flossed network's gain (closed form), each
    # matched-memory network the flossed lambda_1 on the evaluation bits, the J-only networks their
    # W_s, b and readout bit for bit; and every measurement equals the same network measured alone
    from floss_utils.flossing import evaluate_exponents
    from floss_utils.synthesis import CONTROLS, self_teacher_controls

    seeds = [3, 4, 5]
    unflossed, flossed, lam1, fc = _flossed_pair(seeds)
    c = self_teacher_controls(unflossed, flossed, seeds, lam1, flossing=fc, floss_steps=25, eval_steps=150, k=4,
                              seq_len=20, burn_in=5, lanczos_iters=64)
    assert c.untouched
    assert torch.allclose(gain(c.networks.select(c.rows(CONTROLS[0]).tolist())), gain(flossed), rtol=1e-12)
    j_only = c.networks.select(c.rows(CONTROLS[1]).tolist())
    assert torch.allclose(gain(c.networks.select(c.rows(CONTROLS[2]).tolist())), gain(j_only), rtol=1e-12)
    for name in ("W_s", "b", "w_r", "c"):
        assert torch.equal(getattr(j_only, name), getattr(unflossed, name))
    assert not torch.equal(j_only.J, unflossed.J)
    mem = c.rows(CONTROLS[3])
    assert len(mem) == int(c.reached.sum()) >= 1
    assert torch.allclose(c.exponents[mem, 0], lam1[torch.from_numpy(c.reached)], atol=1e-6)
    assert c.fresh_lambda1.shape == (len(mem), 2)
    idx = np.flatnonzero(c.reached).tolist()  # the independent evaluation is evaluate_exponents on key FRESH_KEY
    ref = evaluate_exponents(flossed.select(idx), [seeds[i] for i in idx], steps=150, k=4, key=2)[:, 0]
    assert torch.allclose(c.fresh_lambda1[:, 0], ref, atol=1e-10)
    assert not torch.allclose(c.fresh_lambda1[:, 0], lam1[torch.from_numpy(c.reached)], atol=1e-6)  # other bits
    for r in (0, 4, int(mem[0])):  # a member alone: the same exponents; the top eigenvalue of its dense Hessian
        one = c.networks.select([r])
        s = c.row_seeds[r]
        assert torch.allclose(evaluate_exponents(one, [s], steps=150, k=4, key=1), c.exponents[r:r + 1], atol=1e-10)
        bits = task_bits([s], SHARP_BITS, 0, 20, 2)
        f, J0 = gf_self_teacher_loss(one, ("J",), bits, 5)
        top = torch.linalg.eigvalsh(dense_hessians(f, J0))[:, -1]
        assert torch.allclose(top, c.sharpness[r:r + 1], rtol=1e-6)
    assert list(c.table().network) == c.labels
    with pytest.raises(ValueError, match="unknown control"):
        c.rows("matched noise")
    with pytest.raises(ValueError, match="as many flossed networks"):
        self_teacher_controls(unflossed, flossed.select([0, 1]), seeds, lam1, flossing=fc, floss_steps=1,
                              eval_steps=10, k=4, seq_len=20, burn_in=5, lanczos_iters=2)


def test_control_comparisons_are_the_paired_log_differences():
    # hand-made controls: the mean paired log difference is known in closed form
    from floss_utils.synthesis import CONTROLS, SelfTeacherControls, control_comparisons

    n = 4
    sharp = torch.tensor([2.0] * n + [3.0] * n + [1.5] * n + [4.0, 4.0], dtype=F64)
    var = torch.ones(3 * n + 2, dtype=F64)
    var[-2:] = 2.0
    c = SelfTeacherControls(seeds=list(range(n)), networks=init_gf_networks(list(range(3 * n + 2)), 3, 1),
                            labels=[CONTROLS[0]] * n + [CONTROLS[1]] * n + [CONTROLS[2]] * n + [CONTROLS[3]] * 2,
                            row_seeds=list(range(n)) * 3 + [1, 3], exponents=torch.zeros(3 * n + 2, 1), sharpness=sharp,
                            readout_variance=var, memory_scale=torch.tensor([float("nan"), 1.5, float("nan"), 0.9]),
                            untouched=True, fresh_lambda1=torch.zeros(2, 2))
    S0, Su = np.full(n, 8.0), np.full(n, 1.0)
    out = control_comparisons(c, S0, Su, S0 / 4, level=0.9)
    assert out["flossed vs matched gain"].mean == pytest.approx(np.log(8 / 2))
    assert out["J only vs its matched gain"].mean == pytest.approx(np.log(3 / 1.5))
    assert out["matched gain vs unflossed"].mean == pytest.approx(np.log(2))
    assert out["flossed vs matched memory"].n == 2 and out["flossed vs matched memory"].mean == pytest.approx(np.log(8 / 4))
    assert out["flossed vs matched memory, relative"].mean == pytest.approx(np.log((8 / 4) / (4 / 2)))
    c.memory_scale = torch.tensor([float("nan"), 1.5, float("nan"), float("nan")])
    c.labels, c.row_seeds = c.labels[:-1], c.row_seeds[:-1]
    c.sharpness, c.readout_variance = sharp[:-1], var[:-1]
    assert "flossed vs matched memory" not in control_comparisons(c, S0, Su, S0, level=0.9)  # one seed: no test
    with pytest.raises(ValueError, match="values per condition"):
        control_comparisons(c, S0[:2], Su, S0)


def test_memory_trade_off_is_the_pre_schedule_of_the_trainer_with_the_start_measured():
    # ground truths: the trained networks equal, bit for bit, the trainer's own "pre" schedule run on
    # the same members (flossing outside train() and then training unflossed is the same program);
    # the unflossed condition's exponents are those of the untouched initial networks; the table's
    # intervals are Wilson's
    from floss_utils.common import wilson_interval
    from floss_utils.flossing import FlossingConfig, evaluate_exponents
    from floss_utils.flossing.tasks import copy_task
    from floss_utils.flossing.trainer import Member, TrainConfig, schedule, train
    from floss_utils.synthesis import memory_trade_off

    fc = FlossingConfig(k=6, steps=20, lr=0.01, ons=3)
    cfg = TrainConfig(epochs=40, batch_size=4, seq_len=20, n_units=8, flossing=fc, eval_every=5)
    to = memory_trade_off([0, 1], [0.0, -0.2], copy_task(2), config=cfg, pre_steps=15, eval_steps=60,
                          sharp_seq_len=20, burn_in=5, lanczos_iters=5)
    members = [Member(s, s, copy_task(2), schedule("pre", pre_steps=15) if t is not None else schedule("none"), target=t)
               for t in (None, 0.0, -0.2) for s in (0, 1)]
    ref = train(members, cfg)
    for name in ("J", "W_s", "b", "w_r", "c", "x0"):
        assert torch.equal(getattr(to.training.network, name), getattr(ref.network, name))
    assert torch.equal(to.success_epoch.reshape(-1), ref.success_epoch)
    init = init_gf_networks([0, 1], 8, 4, dtype=F64)
    lam0 = evaluate_exponents(init, [0, 1], steps=60, k=6, key=1)
    assert torch.allclose(to.lambda1[0], lam0[:, 0], atol=1e-12)
    assert torch.allclose(to.mean_flossed[0], lam0.mean(1), atol=1e-12)
    assert bool((to.mean_flossed[1] > to.mean_flossed[0]).all())  # flossed toward 0 from below
    assert bool(torch.isfinite(to.sharpness).all()) and bool((to.sharpness > 0).all())
    tab = to.table()
    lo, hi = wilson_interval(to.success.sum(1).numpy(), 2)
    assert np.allclose(tab["rate lo"], lo) and np.allclose(tab["rate hi"], hi)
    assert list(tab.target) == ["unflossed", "0", "-0.2"]
    with pytest.raises(ValueError, match="pre_steps"):
        memory_trade_off([0], [0.0], copy_task(2), config=cfg, pre_steps=0, eval_steps=10, sharp_seq_len=20,
                         burn_in=5, lanczos_iters=2)
    with pytest.raises(ValueError, match="one target"):
        memory_trade_off([0], [], copy_task(2), config=cfg, pre_steps=1, eval_steps=10, sharp_seq_len=20,
                         burn_in=5, lanczos_iters=2)


def test_batched_adam_takes_one_learning_rate_per_member():
    # a learning-rate grid as one ensemble: member m with lr_m equals a run alone with lr_m (bitwise)
    from floss_utils.optim import BatchedAdam

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, dtype=F64, generator=g)
    grads = [torch.randn(3, 4, dtype=F64, generator=g) for _ in range(5)]
    lrs = torch.tensor([1e-3, 1e-2, 1e-1], dtype=F64)
    x = x0.clone()
    opt = BatchedAdam([x], lr=lrs)
    for gr in grads:
        opt.step([gr])
    for m in range(3):
        y = x0[m:m + 1].clone()
        one = BatchedAdam([y], lr=float(lrs[m]))
        for gr in grads:
            one.step([gr[m:m + 1]])
        assert torch.equal(x[m], y[0])
    with pytest.raises(ValueError, match="per-member lr"):
        BatchedAdam([x], lr=torch.tensor([1e-3, -1.0, 1e-3], dtype=F64))


def test_train_diagonal_on_task_members_independent_and_curvature_checked():
    # ground truths: a member trained inside an ensemble (with other members at other learning
    # rates) equals the member trained alone; the magnitude sharpness at the trained state is the
    # top eigenvalue of the dense magnitude block of the Hessian (reverse-over-reverse autograd);
    # a polar recurrence pushed out of the unit disc is reported unstable (NaN), not used
    from floss_utils.flossing.tasks import HELD_OUT, TaskBatch, copy_task, sample_batch
    from floss_utils.synthesis.diagonal_task import diagonal_task_loss, train_diagonal_on_task

    pop = init_diagonal_population([0, 1], 3, r_min=0.5, r_max=0.9)
    kw = dict(parametrization="exp", normalized=True, steps=30, seq_len=12, batch=4, lanczos_iters=3)
    both = train_diagonal_on_task(pop, [0, 1], copy_task(3), lr=[1e-2, 3e-2], **kw)
    alone = train_diagonal_on_task(DiagonalPopulation(pop.nu[1:], pop.theta[1:], pop.B[1:], pop.C[1:]), [1],
                                   copy_task(3), lr=3e-2, **kw)
    assert torch.allclose(both.losses[:, 1], alone.losses[:, 0], rtol=1e-12)
    assert torch.allclose(both.sharpness_magnitude[1:], alone.sharpness_magnitude, rtol=1e-8)
    held = sample_batch([copy_task(3)], [1], HELD_OUT, 30, 12, 4)
    f, th = diagonal_task_loss({k: v[1:] for k, v in both.params.items()}, held, parametrization="exp", normalized=True)
    H = dense_hessians(f, th)[0]
    assert abs(torch.linalg.eigvalsh(H[:3, :3])[-1].item() / both.sharpness_magnitude[1].item() - 1) < 1e-6
    for param in ("exp", "exp_opt"):  # the angle block too, in both angle parametrizations
        run = both if param == "exp" else train_diagonal_on_task(pop, [0, 1], copy_task(3), lr=[1e-2, 3e-2],
                                                                 **{**kw, "parametrization": "exp_opt"})
        f, th = diagonal_task_loss({k: v[1:] for k, v in run.params.items()}, held, parametrization=param,
                                   normalized=True)
        H = dense_hessians(f, th)[0]
        assert abs(torch.linalg.eigvalsh(H[3:, 3:])[-1].item() / run.sharpness_angle[1].item() - 1) < 1e-6
    # a polar recurrence thrown out of the disc (lr 0.5 from |lambda| = 0.999) is projected back, counted
    big = DiagonalPopulation(torch.full((1, 2), 0.999, dtype=F64), torch.zeros(1, 2, dtype=F64),
                             torch.ones(1, 2, dtype=torch.complex128), torch.ones(1, 2, dtype=torch.complex128))
    out = train_diagonal_on_task(big, [0], copy_task(3), parametrization="polar", normalized=True, steps=20, lr=0.5,
                                 seq_len=12, batch=4, lanczos_iters=2, nu_max=0.99)
    assert bool((out.nu <= 0.99 + 1e-12).all()) and int(out.projected_steps[0]) > 0
    assert torch.isfinite(out.accuracy).all() and torch.isfinite(out.validation_accuracy).all()
    with pytest.raises(ValueError, match="lr > 0"):
        train_diagonal_on_task(pop, [0, 1], copy_task(3), lr=[1e-2, 1e-2, 1e-2], **kw)


def _trade_off_by_hand(success, sharp, conditions):
    from floss_utils.synthesis import TradeOff

    success = torch.tensor(success, dtype=torch.bool)
    C, S = success.shape
    nan = torch.full((C, S), float("nan"), dtype=F64)
    return TradeOff(conditions=conditions, seeds=list(range(S)), lambda1=nan, mean_flossed=nan,
                    sharpness=torch.tensor(sharp, dtype=F64),
                    success_epoch=torch.where(success, torch.full((C, S), 7), torch.full((C, S), -1)),
                    final_accuracy=nan, diverged=torch.zeros(C, S, dtype=torch.bool), epochs=10)


def test_trade_off_paired_success_test_and_recipe_rule_on_hand_made_outcomes():
    # ground truths: the discordant-seed counts read off by hand; the one-sided sign test is the
    # binomial tail sum_{i >= n_for} C(n, i) / 2^n (written out with math.comb); the recipe is the
    # rule applied by hand
    from math import comb

    conds = [None, 0.0, -0.1, -0.3]
    success = [[0, 0, 1, 0, 0, 0],   # unflossed
               [1, 1, 1, 1, 1, 0],   # target 0: 5
               [1, 1, 0, 1, 1, 1],   # -0.1: 5 (as often as 0)
               [1, 0, 0, 1, 1, 1]]   # -0.3: 4
    sharp = [[1.0] * 6, [8.0] * 6, [3.0, 3, 3, 3, 3, float("nan")], [2.0] * 6]
    to = _trade_off_by_hand(success, sharp, conds)
    assert to.successes() == {None: 1, 0.0: 5, -0.1: 5, -0.3: 4}
    assert to.median_sharpness()[-0.1] == 3.0  # the NaN member left out
    rep = to.fewer_successes(None, 0.0)
    assert (rep.n_for, rep.n_against) == (4, 0)  # seeds 0, 1, 3, 4 only flossed; none only unflossed
    assert rep.p == pytest.approx(sum(comb(4, i) for i in range(4, 5)) / 2**4)
    r = to.fewer_successes(-0.3, 0.0)
    assert (r.n_for, r.n_against) == (2, 1)  # seeds 1, 2 against seed 5
    assert r.p == pytest.approx(sum(comb(3, i) for i in range(2, 4)) / 2**3)
    assert to.fewer_successes(0.0, 0.0).p == 1.0  # no discordant seed: no evidence
    assert to.recipe() == -0.1  # -0.3 has fewer successes than 0; -0.1 as many
    # every negative target flatter but none as successful as 0: no recipe
    assert _trade_off_by_hand([success[0], success[1], success[3], success[3]], sharp, conds).recipe() is None
    # two kept targets: the flatter one
    assert _trade_off_by_hand([success[0], success[1], success[2], success[1]], sharp, conds).recipe() == -0.3
    # target 0 never succeeds: a negative target that never succeeds either is no recipe
    never = [[0] * 6] * 4
    assert _trade_off_by_hand(never, sharp, conds).recipe() is None
    # a kept target whose sharpness is NaN for every member is left out, not compared
    nan_sharp = [sharp[0], sharp[1], [float("nan")] * 6, sharp[3]]
    assert _trade_off_by_hand([success[0], success[1], success[1], success[1]], nan_sharp, conds).recipe() == -0.3
    with pytest.raises(ValueError, match="no condition"):
        to.fewer_successes(-0.5, 0.0)
    with pytest.raises(ValueError, match="no condition 0.0"):
        _trade_off_by_hand(success[:1] + success[2:], sharp[:1] + sharp[2:], [None, -0.1, -0.3]).recipe()


def test_learning_rate_grid_and_choice_on_the_validation_batch():
    # ground truths: the grid's layout (rate-major copies of the population); the choice read off
    # hand-made validation accuracies (unstable seeds count as the worst, ties go to the first rate,
    # no rate when every median seed is unstable); the reported values are those of the chosen rate
    from floss_utils.synthesis import DiagonalTaskRun, choose_learning_rate, learning_rate_grid, paired_sharpness

    pop = init_diagonal_population([0, 1], 3, r_min=0.5, r_max=0.9)
    grid, seeds, lrs = learning_rate_grid(pop, [10, 11], [1e-3, 1e-2, 3e-2])
    assert seeds == [10, 11] * 3 and lrs == [1e-3, 1e-3, 1e-2, 1e-2, 3e-2, 3e-2]
    assert torch.equal(grid.nu[4:], pop.nu) and torch.equal(grid.B[2:4], pop.B)
    with pytest.raises(ValueError, match="one seed per member"):
        learning_rate_grid(pop, [10], [1e-3])

    nan = float("nan")
    val = torch.tensor([0.6, 0.7, 0.9, nan, 0.8, 0.85, nan, nan], dtype=F64)  # 4 rates x 2 seeds
    acc = val + 0.01
    run = DiagonalTaskRun(params={}, nu=torch.arange(16, dtype=F64).reshape(8, 2) / 20, losses=torch.zeros(1, 8),
                          accuracy=acc, validation_accuracy=val, projected_steps=torch.arange(8),
                          sharpness_magnitude=torch.arange(8, dtype=F64), sharpness_angle=-torch.arange(8, dtype=F64))
    # medians (lower middle, unstable = -1): 0.6, -1, 0.8, -1 -> the third rate
    ch = choose_learning_rate(run, [1, 2, 3, 4])
    assert ch.lr == 3 and torch.equal(ch.accuracy, acc[4:6]) and torch.equal(ch.magnitude, torch.tensor([4.0, 5.0], dtype=F64))
    assert torch.equal(ch.nu_max, torch.tensor([9 / 20, 11 / 20], dtype=F64)) and ch.projected == 4.0
    assert ch.unstable == 0 and ch.unstable_grid == 3
    assert np.allclose(ch.accuracy_by_rate[[0, 2]], [0.61, 0.81]) and ch.accuracy_by_rate[1] == pytest.approx(0.91)
    # per-rate medians of the sharpness (lower middle of 2): 0, 2, 4, 6; angle the negatives
    assert np.allclose(ch.magnitude_by_rate, [0.0, 2.0, 4.0, 6.0]) and np.allclose(ch.angle_by_rate, [-1.0, -3.0, -5.0, -7.0])
    tie = DiagonalTaskRun(**{**vars(run), "validation_accuracy": torch.tensor([0.8, 0.9, 0.8, 0.9, 0, 0, 0, 0], dtype=F64)})
    assert choose_learning_rate(tie, [1, 2, 3, 4]).lr == 1
    dead = DiagonalTaskRun(**{**vars(run), "validation_accuracy": torch.tensor([nan, 0.9] * 4, dtype=F64)})
    none = choose_learning_rate(dead, [1, 2, 3, 4])
    assert np.isnan(none.lr) and none.unstable == 2 and bool(torch.isnan(none.accuracy).all())
    with pytest.raises(ValueError, match="grid of 3"):
        choose_learning_rate(run, [1, 2, 3])
    # the paired log-sharpness comparison keeps only seeds where both are finite and positive
    pc = paired_sharpness(torch.tensor([4.0, 9.0, nan, -1.0]), torch.tensor([2.0, 3.0, 1.0, 1.0]), level=0.9)
    assert pc.n == 2 and pc.mean == pytest.approx((np.log(2) + np.log(3)) / 2)
    assert paired_sharpness(torch.tensor([-1.0]), torch.tensor([1.0]), level=0.9) is None


@pytest.mark.parametrize("parametrization", ["polar", "exp", "exp_opt"])
@pytest.mark.parametrize("normalized", [True, False])
def test_diagonal_task_logits_equal_the_step_by_step_recurrence(parametrization, normalized):
    # the task's logits as one Toeplitz product with the kernel Re sum_i C_i gamma_i B_i lambda_i^tau, against the
    # recurrence h_t = lambda h_{t-1} + gamma B s_t run step by step (diagonal_recurrence): values, gradients and
    # Hessian-vector products (the sharpness's Lanczos) to 1e-12 relative (round-off; T = 67 is not a power of 2)
    from floss_utils.curse_of_memory.scans import diagonal_recurrence
    from floss_utils.curse_of_memory.students import lambda_from_params, params_from_lambda
    from floss_utils.synthesis.diagonal import PARAMETRIZATIONS
    from floss_utils.synthesis.diagonal_task import _logits

    g = torch.Generator().manual_seed(1)
    M, n, T, b = 4, 6, 67, 3
    nu = 0.49 + 0.5 * torch.rand(M, n, generator=g, dtype=torch.float64)
    theta = 3 * torch.rand(M, n, generator=g, dtype=torch.float64)
    B, C = (torch.randn(M, n, generator=g, dtype=torch.complex128) for _ in range(2))
    c = torch.randn(M, generator=g, dtype=torch.float64)
    bits = torch.randint(0, 2, (T, M, b), generator=g).double()
    magnitude, angle = PARAMETRIZATIONS[parametrization]

    def stepwise(mag, ang, B, C, c):
        lam = lambda_from_params(mag, ang, magnitude, angle)
        gamma = torch.sqrt(1 - lam.abs().detach() ** 2) if normalized else torch.ones_like(lam.abs())
        drive = (gamma * B)[:, None, None, :] * (2 * bits - 1).permute(1, 2, 0).unsqueeze(-1).to(B.dtype)
        h = diagonal_recurrence(lam.unsqueeze(1), drive)  # (M, b, T, n)
        return ((h * C[:, None, None, :]).sum(-1).real + c[:, None, None]).permute(2, 0, 1)

    def derivatives(f):
        x = [t.clone().requires_grad_(True) for t in (*params_from_lambda(nu, theta, magnitude, angle), B, C, c)]
        y = f(*x)
        grads = torch.autograd.grad((y ** 2).sum(), x, create_graph=True)  # training's: every parameter
        hvp = torch.autograd.grad(sum(gr.sum() for gr in grads[:2]), x[:2])  # the sharpness's: (mag, ang)
        return [y.detach(), *(t.detach() for t in grads), *hvp]

    fast = derivatives(lambda mag, ang, B, C, c: _logits(mag, ang, B, C, c, bits, magnitude, angle, normalized))
    for a, r in zip(fast, derivatives(stepwise)):
        assert float((a - r).abs().max() / r.abs().max()) < 1e-12


def test_paired_shrink_is_the_geometric_mean_ratio_with_an_exact_sign_flip_p():
    from itertools import product
    from floss_utils.synthesis.self_teacher import paired_shrink
    before = np.array([1.0, 2.0, 4.0, 1.0])
    after = np.array([2.0, 1.0, 1.0, 1.0])  # ratios 2, 1/2, 1/4, 1: geometric mean (1/4)^(1/4)
    s = paired_shrink(before, after, level=0.9)
    assert s.ratio == pytest.approx(0.25 ** 0.25, rel=1e-12)
    assert (s.n, s.n_smaller, s.p_min, s.level) == (4, 2, 1 / 16, 0.9)
    # the sign-flip p by hand: log-ratio magnitudes, all 16 sign patterns, share with mean >= the observed
    d = np.log(before / after)
    hits = sum(np.dot(sg, np.abs(d)) >= d.sum() - 1e-12 for sg in product((1, -1), repeat=4))
    assert s.p == pytest.approx(hits / 16)
    # by hand: |d| = (ln 2, ln 2, ln 4, 0), observed sum ln 4; the sign patterns reaching it are +++, -++, +-+ on the
    # first three (the fourth's sign is free): 6 of 16
    assert s.p == pytest.approx(6 / 16)
    assert s.lo <= s.ratio <= s.hi and s.lo >= 0.25 and s.hi <= 2.0  # a mean of the ratios' logs stays within them
    # every seed halved: ratio 1/2 with a degenerate interval and the smallest p of 6 seeds
    s = paired_shrink(np.ones(6), np.full(6, 0.5), level=0.9)
    assert (s.ratio, s.lo, s.hi, s.p, s.n_smaller) == pytest.approx((0.5, 0.5, 0.5, 2 ** -6, 6))
    assert s.decidable(0.05) and not paired_shrink(np.ones(4), np.full(4, 0.5), level=0.9).decidable(0.05)
    with pytest.raises(ValueError, match="positive"):
        paired_shrink([1.0, 0.0], [1.0, 1.0], level=0.9)
    with pytest.raises(ValueError, match="one value per seed"):
        paired_shrink([1.0, 2.0], [1.0], level=0.9)


def test_paired_shrink_in_table_pairs_by_seed_not_by_row_order():
    import pandas as pd
    from floss_utils.synthesis.self_teacher import paired_shrink, paired_shrink_in_table
    before = {0: 1.0, 1: 3.0, 2: 2.0, 3: 5.0, 4: 1.5}
    after = {0: 0.5, 1: 3.3, 2: 1.0, 3: 2.0, 4: 1.4}
    rows = [("0", s, v) for s, v in after.items()][::-1] + [("unflossed", s, v) for s, v in before.items()]
    table = pd.DataFrame(rows, columns=["condition", "seed", "eta"]).sample(frac=1.0, random_state=3)
    got = paired_shrink_in_table(table, "eta", level=0.9, seed=1)
    want = paired_shrink(list(before.values()), list(after.values()), level=0.9, seed=1)
    assert got == want
    # a subset of seeds, in any order, is the test over those seeds only
    sub = paired_shrink_in_table(table, "eta", level=0.9, seed=1, seeds=[3, 0, 2])
    assert sub == paired_shrink([5.0, 1.0, 2.0], [2.0, 0.5, 1.0], level=0.9, seed=1)
    with pytest.raises(ValueError, match="not in the table"):
        paired_shrink_in_table(table, "eta", level=0.9, seeds=[0, 9])
    with pytest.raises(KeyError, match="no column 'nope'"):
        paired_shrink_in_table(table, "nope", level=0.9)
    with pytest.raises(ValueError, match="same seeds"):
        paired_shrink_in_table(table[~((table.condition == "0") & (table.seed == 2))], "eta", level=0.9)
    with pytest.raises(ValueError, match="no rows"):
        paired_shrink_in_table(table, "eta", after="-0.1", level=0.9)


def test_shrink_weaker_compares_intervals_not_points():
    from floss_utils.synthesis.self_teacher import Shrink, shrink_weaker
    mk = lambda r, lo, hi, level=0.9: Shrink(ratio=r, lo=lo, hi=hi, p=0.01, n_smaller=8, n=8, p_min=2 ** -8, level=level)
    strong, weak = mk(0.3, 0.2, 0.4), mk(0.8, 0.7, 0.9)
    steep, shallow = (-0.7, -0.5), (-0.12, -0.08)
    assert shrink_weaker(weak, shallow, strong, steep)
    assert not shrink_weaker(strong, steep, weak, shallow)
    # points apart but intervals overlapping: not shown weaker
    assert not shrink_weaker(mk(0.8, 0.35, 0.95), shallow, strong, steep)
    assert not shrink_weaker(weak, (-0.6, -0.1), strong, steep)
    # no interval (one seed) shows nothing; intervals at different levels are refused
    assert not shrink_weaker(weak, shallow, mk(0.3, float("nan"), float("nan")), steep)
    assert not shrink_weaker(weak, (float("nan"), float("nan")), strong, steep)
    one_seed = Shrink(ratio=0.3, lo=0.3, hi=0.3, p=0.5, n_smaller=1, n=1, p_min=0.5, level=0.9)
    assert not shrink_weaker(weak, shallow, one_seed, steep)
    with pytest.raises(ValueError, match="one level"):
        shrink_weaker(weak, shallow, mk(0.3, 0.2, 0.4, level=0.95), steep)


def test_arrival_misses_names_the_networks_outside_the_tolerance():
    import pandas as pd
    from floss_utils.synthesis.self_teacher import arrival_misses
    table = pd.DataFrame({"condition": ["0"] * 4 + ["-0.1"] * 2 + ["unflossed"],
                          "seed": [0, 1, 2, 3, 0, 1, 0],
                          "mean flossed lambda": [-0.01, -0.11, 0.03, -0.024, -0.2, -0.09, -0.9]})
    assert arrival_misses(table, "0", 0.0, 0.025) == [1, 2]  # |-0.11| and |0.03| >= 0.025; -0.024 arrived
    assert arrival_misses(table, "-0.1", -0.1, 0.025) == [0]
    with pytest.raises(ValueError, match="no rows"):
        arrival_misses(table, "-0.3", -0.3, 0.025)


def test_kept_run_shrink_reads_a_kept_table_by_hand():
    import pandas as pd
    from floss_utils.synthesis.self_teacher import kept_run_shrink, paired_shrink
    # 4 seeds; flossed to 0 halves eta on seeds 0-2 and doubles it on seed 3, which did not arrive (-0.2)
    before = {0: 4.0, 1: 2.0, 2: 8.0, 3: 1.0}
    after = {0: 2.0, 1: 1.0, 2: 4.0, 3: 2.0}
    lam = {0: -0.01, 1: 0.02, 2: -0.03, 3: -0.2}
    rows = [("unflossed", s, v, -0.9) for s, v in before.items()] + [("0", s, after[s], lam[s]) for s in (3, 1, 0, 2)]
    table = pd.DataFrame(rows, columns=["condition", "seed", "median effective lr", "mean flossed lambda"])
    record = pd.DataFrame({"seed": [0, 1, 7], "eta_unflossed": [4.0, 2.0, 9.0], "eta_flossed_to_0": [2.0, 1.0, 9.0]})
    k = kept_run_shrink(table, record, tol=0.05, level=0.9, seed=3)
    assert k.seeds == [0, 1, 2, 3] and k.not_arrived == [3] and k.worst == 3
    assert k.ratios.to_dict() == {0: 0.5, 1: 0.5, 2: 0.5, 3: 2.0}
    assert k.flossed_lambda.loc[3] == -0.2
    # geometric mean of (1/2)^3 * 2 = (1/4)^(1/4); over the arrived seeds exactly 1/2
    assert k.shrink.ratio == pytest.approx(0.25 ** 0.25) and k.shrink.n_smaller == 3
    assert k.shrink == paired_shrink(list(before.values()), [after[s] for s in before], level=0.9, seed=3)
    assert k.shrink_arrived.ratio == pytest.approx(0.5) and k.shrink_arrived.n == 3
    assert k.shared == [0, 1] and k.equal_to_record
    # one value off on a shared seed breaks the equality; nothing shared is not equality
    assert not kept_run_shrink(table, record.assign(eta_flossed_to_0=[2.0, 1.0000001, 9.0]), tol=0.05, level=0.9).equal_to_record
    assert not kept_run_shrink(table, record.assign(seed=[7, 8, 9]), tol=0.05, level=0.9).equal_to_record
    # fewer than 2 arrived: no test over them
    assert kept_run_shrink(table, record, tol=0.005, level=0.9).shrink_arrived is None
    with pytest.raises(KeyError, match="eta_unflossed"):
        kept_run_shrink(table, record.drop(columns=["eta_unflossed"]), tol=0.05, level=0.9)
    assert k.arrival_text() == ("1 of the 4 networks flossed to 0 did not arrive by section 12.2's criterion (seeds 3 at "
                                f"-0.200: the mean of their flossed exponents); over the 3 that did: {k.shrink_arrived}")


def test_read_kept_run_reads_the_folder_with_the_runs_own_tolerance(tmp_path):
    import json
    import pandas as pd
    from floss_utils.synthesis.self_teacher import kept_run_shrink, read_kept_run
    record = pd.DataFrame({"seed": [0], "eta_unflossed": [4.0], "eta_flossed_to_0": [2.0]})
    assert read_kept_run(tmp_path / "none", record, tolerance=lambda t: 0.05, level=0.9) == (None, None)
    run = {"status": "timed out", "parameters": {"targets": [0.0, -0.1]}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert read_kept_run(tmp_path, record, tolerance=lambda t: 0.05, level=0.9) == (run, None)  # stopped before 12.4
    table = pd.DataFrame({"condition": ["unflossed", "unflossed", "0", "0"], "seed": [0, 1, 0, 1],
                          "median effective lr": [4.0, 3.0, 2.0, 1.0], "mean flossed lambda": [-0.9, -0.9, -0.04, 0.0]})
    table.to_csv(tmp_path / "populations.csv", index=False)
    seen = []
    got_run, got = read_kept_run(tmp_path, record, tolerance=lambda t: seen.append(list(t)) or 0.03, level=0.9, seed=2)
    assert got_run == run and seen == [[0.0, -0.1]] and got.not_arrived == [0]  # -0.04 is outside 0.03
    want = kept_run_shrink(table, record, tol=0.03, level=0.9, seed=2)
    assert got.shrink == want.shrink and got.ratios.equals(want.ratios) and got.equal_to_record and want.equal_to_record
