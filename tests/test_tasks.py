"""The binary memory tasks (delayed copy, hierarchical XOR) and the GF network model.

Ground truths: brute-force definitions written element by element, the presented-input rule for
the first scored step, and direct loops over the model equations.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from floss_utils.flossing.tanh_network import GFNetwork, init_gf_networks
from floss_utils.flossing.tasks import (HELD_OUT, TRAIN, Task, accuracy, copy_task, sample_batch,
                                        sample_bits, score_mask, targets, xor_task)

from conftest import F64


def brute_force_target(bits: list[int], t: int, delay: int, order: int):
    """y_t = parity(s_{t-d}, s_{t-2d}, ..., s_{t-2^h d}); None when an input was never presented."""
    idx = [t - delay * j for j in range(1, 2 ** order + 1)]
    if min(idx) < 0:
        return None
    return sum(bits[i] for i in idx) % 2


@pytest.mark.parametrize("task", [copy_task(1), copy_task(3), xor_task(2, 1), xor_task(3, 1), xor_task(2, 2),
                                  xor_task(1, 3)])
def test_targets_match_brute_force(task):
    T, M, B = 40, 2, 3
    s = sample_bits([7, 8], TRAIN, 0, 0, T, B)
    y = targets(s, task)
    mask = score_mask(T, task, M)
    for m, b, t in itertools.product(range(M), range(B), range(T)):
        bits = [int(v) for v in s[:, m, b]]
        ref = brute_force_target(bits, t, task.delay, task.order)
        assert bool(mask[t, m]) == (ref is not None), (task, t)
        if ref is not None:
            assert int(y[t, m, b]) == ref, (task, m, b, t)


def test_copy_is_order_zero_and_xor_lags():
    assert copy_task(5).lags == (5,)
    assert xor_task(10).lags == (10, 20)  # GF: XOR of lags (10, 20)
    assert xor_task(3, 2).lags == (3, 6, 9, 12)


@pytest.mark.parametrize("task", [copy_task(4), xor_task(4, 1), xor_task(3, 2)])
def test_first_scored_step_depends_only_on_presented_inputs(task):
    # The first scored step is the largest lag L: its target uses s_0 (the first presented input)
    # and nothing before it; one step earlier would need s_{-1}. GF's public code scores one step
    # earlier (off by one): a perfect predictor would score 0.998, here exactly 1.
    L = task.first_scored
    assert L == max(task.lags)
    assert min(L - lag for lag in task.lags) == 0
    assert min(L - 1 - lag for lag in task.lags) == -1
    T = L + 20
    s = sample_bits([3], TRAIN, 0, 0, T, 8)
    y = targets(s, task)
    s2 = s.clone()
    s2[0] = 1 - s2[0]  # flip the first presented input: the first scored target flips (parity)
    assert torch.equal(targets(s2, task)[L], 1 - y[L])
    mask = score_mask(T, task, 1)
    assert not bool(mask[L - 1, 0]) and bool(mask[L, 0])
    # an oracle (logit = +-1 from the target) reaches accuracy 1.0 exactly: no unscorable step
    batch = sample_batch([task], [3], TRAIN, 0, T, 8)
    assert float(accuracy(2 * batch.targets - 1, batch)[0]) == 1.0


def test_per_member_tasks_and_masks():
    tasks = [copy_task(2), xor_task(3)]
    batch = sample_batch(tasks, [1, 1], TRAIN, 0, 30, 4)
    assert torch.equal(batch.inputs[:, 0], batch.inputs[:, 1])  # same data seed: same bits
    assert batch.mask[:, 0].nonzero()[0].item() == 2 and batch.mask[:, 1].nonzero()[0].item() == 6
    with pytest.raises(ValueError, match="no scored step"):
        score_mask(5, xor_task(3), 1)


def test_bits_are_fresh_and_reproducible():
    a = sample_bits([0, 1], TRAIN, 1, 0, 50, 4)
    assert torch.equal(a, sample_bits([0, 1], TRAIN, 1, 0, 50, 4))  # same seed, same bits
    assert not torch.equal(a, sample_bits([0, 1], TRAIN, 2, 0, 50, 4))  # fresh each epoch
    assert not torch.equal(a, sample_bits([0, 1], HELD_OUT, 1, 0, 50, 4))  # held-out differs
    assert not torch.equal(a[:, 0], a[:, 1])
    assert set(a.unique().tolist()) == {0.0, 1.0}
    # balanced bits: the mean of 10^4 fair bits lies within 5 sigma (0.025) of 1/2
    assert abs(sample_bits([5], TRAIN, 0, 0, 2500, 4).mean().item() - 0.5) < 0.025


def test_task_arguments_checked():
    with pytest.raises(ValueError, match="delay"):
        Task(0, 1)
    with pytest.raises(ValueError, match="order"):
        Task(2, -1)
    with pytest.raises(TypeError, match="delay"):
        Task(2.0, 1)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the GF network model


def test_gf_network_equations_by_direct_loop():
    # x_t = J tanh(x_{t-1}) + b + W_s s_t, r_t = w_r . x_t + c, written out per member and sequence
    net = init_gf_networks([0, 1], 7, 3)
    s = sample_bits([0, 1], TRAIN, 0, 0, 12, 3)
    logits = net.logits(s)
    states = net.run(s)
    for m, b in itertools.product(range(2), range(3)):
        x = net.x0[m, b].clone()
        for t in range(12):
            x = net.J[m] @ torch.tanh(x) + net.b[m] + net.W_s[m] * s[t, m, b]
            assert torch.allclose(states[t, m, b], x, atol=1e-13)
            assert torch.allclose(logits[t, m, b], net.w_r[m] @ x + net.c[m], atol=1e-12)


def test_gf_initialization():
    # statistics of J (g^2/N variance), b in [0, 0.1), c = 0.001, relaxed initial state
    net = init_gf_networks(range(8), 80, 16)
    N = 80
    var = net.J.var().item() * N
    assert abs(var - 1.0) < 0.02  # 51200 Gaussian entries: std of the variance estimate ~0.006
    assert 0 <= net.b.min().item() and net.b.max().item() < 0.1
    assert torch.all(net.c == 0.001)
    # relaxed: the raw random state (relax_steps=0) iterated 100 times input-free, by a direct loop
    raw = init_gf_networks([5], 12, 3, relax_steps=0)
    relaxed = init_gf_networks([5], 12, 3)
    x = raw.x0[0].clone()
    for _ in range(100):
        x = torch.tanh(x) @ raw.J[0].T + raw.b[0]
    assert torch.allclose(relaxed.x0[0], x, atol=1e-12)
    # orthogonal option: J^T J = g^2 I
    o = init_gf_networks([0], 10, 1, gain=0.9, orthogonal=True)
    assert torch.allclose(o.J[0].T @ o.J[0], 0.81 * torch.eye(10, dtype=F64), atol=1e-13)


def test_gf_ensemble_init_equals_members_alone():
    ens = init_gf_networks([3, 9], 10, 4)
    for m, s in enumerate([3, 9]):
        one = init_gf_networks([s], 10, 4)
        for name in ("J", "W_s", "b", "w_r", "c", "x0"):
            assert torch.allclose(getattr(ens, name)[m], getattr(one, name)[0], atol=1e-14, rtol=0), name


def test_recurrent_map_matches_run():
    # the TanhRNN view (used for exponents) steps like the model with drive W_s s_t
    net = init_gf_networks([2, 4], 9, 1)
    s = sample_bits([2, 4], TRAIN, 0, 0, 6, 1)
    sysmap, drive = net.recurrent_map(), net.drive(s[:, :, 0])
    x = net.x0[:, 0]
    states = net.run(s)
    for t in range(6):
        x = sysmap.step(x, drive[t])
        assert torch.allclose(x, states[t, :, 0], atol=1e-13)


def test_gf_network_cat_and_select():
    a, b = init_gf_networks([0, 1], 6, 2), init_gf_networks([2], 6, 2, gain=2.0)
    ab = GFNetwork.cat([a, b])
    assert ab.n_members == 3 and torch.equal(ab.J[2], b.J[0]) and torch.equal(ab.x0[:2], a.x0)
    assert torch.equal(ab.select([2, 0]).W_s, torch.stack([b.W_s[0], a.W_s[0]]))


def test_tasks_with_lag_share_the_largest_lag():
    from floss_utils.flossing.tasks import tasks_with_lag

    ts = tasks_with_lag([0, 1, 2], 16)
    assert [(t.order, t.delay) for t in ts] == [(0, 16), (1, 8), (2, 4)]
    assert {t.first_scored for t in ts} == {16}  # the first scorable step is the largest lag
    with pytest.raises(ValueError, match="multiple of 2\\^h = 4"):
        tasks_with_lag([2], 6)
    with pytest.raises(ValueError, match="non-negative"):
        tasks_with_lag([-1], 8)
