"""The Part III trainer: schedules, the task loss, ensembles equal separate runs, per-member
clipping and divergence, success bookkeeping. Small sizes; float64. Tolerances stated per test."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from floss_utils.flossing.flosser import FlossingConfig, Flosser
from floss_utils.flossing.trainer import (Member, Schedule, TrainConfig, first_flossing_twins, grid, schedule, task_loss,
                                         train)
from floss_utils.flossing.tanh_network import init_gf_networks
from floss_utils.flossing.tasks import TRAIN, copy_task, sample_batch, xor_task

SMALL = TrainConfig(epochs=12, batch_size=3, seq_len=30, n_units=10, clip=0.03,
                    flossing=FlossingConfig(k=4, steps=20, lr=0.01), exponents_every=5)


def test_schedules_follow_gf():
    # GF: pre-flossing E_p before epoch 1; inter-flossing E_i at every epoch that is a multiple of
    # E_f, at most N_i rounds
    both = schedule("both", 500, 500, 100, 2)
    steps = {e: both.floss_steps(e) for e in range(1, 3002) if both.floss_steps(e)}
    assert steps == {1: 500, 100: 500, 200: 500}
    assert schedule("none").total_steps == 0 and schedule("pre").total_steps == 500
    assert {e for e in range(1, 1000) if schedule("inter").floss_steps(e)} == {100, 200}
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule("sometimes")
    with pytest.raises(ValueError, match="inter_every"):
        Schedule("x", inter_every=0)


def test_task_loss_is_masked_mean_bce():
    # against torch's BCE on each member's scored steps, computed separately (1e-13)
    tasks = [copy_task(2), xor_task(4)]
    net = init_gf_networks([0, 1], 8, 3)
    batch = sample_batch(tasks, [0, 1], TRAIN, 1, 20, 3)
    loss = task_loss(net, batch)
    logits = net.logits(batch.inputs)
    for m, t in enumerate(tasks):
        L = t.first_scored
        ref = F.binary_cross_entropy_with_logits(logits[L:, m], batch.targets[L:, m])
        assert torch.allclose(loss[m], ref, atol=1e-13)


def test_ensemble_equals_separate_runs():
    # 4 members with different schedules, tasks and seeds trained together vs one by one: the same
    # histories and parameters. Tolerance 1e-9: batched and single BLAS calls differ in round-off,
    # which 12 epochs of training (flossing included) amplify only mildly.
    members = [
        Member(0, 0, copy_task(2), schedule("none")),
        Member(1, 1, xor_task(3), schedule("pre", pre_steps=4)),
        Member(2, 0, xor_task(2), schedule("inter", inter_steps=3, inter_every=5, inter_rounds=2)),
        Member(3, 3, copy_task(5), schedule("both", 3, 2, 4, 2)),
    ]
    ens = train(members, SMALL)
    for m, mb in enumerate(members):
        one = train([mb], SMALL)
        for name in ("loss", "accuracy", "grad_norm_x0"):
            assert torch.allclose(getattr(ens, name)[:, m], getattr(one, name)[:, 0], atol=1e-9, rtol=0, equal_nan=True), (m, name)
        assert torch.allclose(ens.exponents[:, m], one.exponents[:, 0], atol=1e-9, rtol=0)
        for name in ("J", "W_s", "b", "w_r", "c", "x0"):
            assert torch.allclose(getattr(ens.network, name)[m], getattr(one.network, name)[0], atol=1e-9, rtol=0)
    # flossing happened exactly when scheduled
    fl = ens.floss_loss
    assert int(torch.isfinite(fl[:, 0]).sum()) == 0
    assert int(torch.isfinite(fl[:, 1]).sum()) == 4
    assert int(torch.isfinite(fl[:, 2]).sum()) == 6
    assert int(torch.isfinite(fl[:, 3]).sum()) == 3 + 2 * 2


def test_twins_are_flossed_once_and_train_as_alone(monkeypatch):
    # a seeds x schedules x tasks grid: before the first task step the pre-flossing of (seed, schedule)
    # does not depend on the task, so each group of twins is flossed once; every member still follows
    # its own trajectory alone (1e-9, as above), the twins' flossing losses are recorded, and the
    # flossing-Adam state carried into the later rounds of "both" is the representative's
    pre, both = schedule("pre", pre_steps=4), schedule("both", 4, 2, 4, 2)
    members = grid([0, 1], [schedule("none"), pre, both], [copy_task(2), xor_task(3)])
    net = init_gf_networks([m.net_seed for m in members], SMALL.n_units, SMALL.batch_size)
    twins = first_flossing_twins(members, net, Flosser(net, SMALL.flossing, [m.net_seed for m in members]))
    groups = sorted(sorted([r, *d]) for r, d in twins)
    flossed = [[i for i, m in enumerate(members) if m.net_seed == s and m.schedule.pre_steps] for s in (0, 1)]
    assert groups == flossed and all(len(g) == 4 for g in groups)
    active = []  # members each flossing step computes: at epoch 1 one per group of twins (2), not 8
    step = Flosser.step
    monkeypatch.setattr(Flosser, "step", lambda self, act=None: active.append(int(torch.as_tensor(act).sum()))
                        or step(self, act))
    ens = train(members, SMALL)
    assert active[:4] == [2] * 4 and active[4:] and max(active[4:]) == 4  # later rounds: "both" members, one per task
    monkeypatch.undo()
    for m, mb in enumerate(members):
        one = train([mb], SMALL)
        if mb.schedule.total_steps:
            fl = ens.floss_loss[:, m]
            assert torch.allclose(fl[torch.isfinite(fl)], one.floss_loss[:, 0], atol=1e-9, rtol=0), m
        assert torch.allclose(ens.loss[:, m], one.loss[:, 0], atol=1e-9, rtol=0), m
        for name in ("J", "W_s", "b", "w_r", "c", "x0"):
            assert torch.allclose(getattr(ens.network, name)[m], getattr(one.network, name)[0], atol=1e-9, rtol=0)
    # not twins: another target, another number of flossed exponents, or other parameters
    m0 = Member(0, 0, copy_task(2), pre)
    for other in (Member(0, 0, xor_task(3), pre, target=-0.5), Member(0, 0, xor_task(3), pre, n_floss=2)):
        net = init_gf_networks([0, 0], SMALL.n_units, SMALL.batch_size)
        assert first_flossing_twins([m0, other], net, Flosser(net, SMALL.flossing, [0, 0],
                                    targets=[0.0, other.target or 0.0],
                                    n_floss=[SMALL.flossing.k, other.n_floss or SMALL.flossing.k])) == []
    net = init_gf_networks([0, 0], SMALL.n_units, SMALL.batch_size)
    with torch.no_grad():
        net.J[1] += 1e-12
    assert first_flossing_twins([m0, m0], net, Flosser(net, SMALL.flossing, [0, 0])) == []
    net = init_gf_networks([0, 0], SMALL.n_units, SMALL.batch_size)
    assert first_flossing_twins([m0, m0], net, Flosser(net, SMALL.flossing, [0, 0])) == [(0, [1])]


def test_per_member_targets_and_counts():
    # members with their own target lambda* and number of flossed exponents, trained together,
    # follow the same trajectories as alone (1e-9, as above); the flossing loss differs between
    # members that differ only in (target, n_floss), and a flossed count above k is refused
    pre = schedule("pre", pre_steps=5)
    members = [Member(0, 0, copy_task(2), pre), Member(0, 0, copy_task(2), pre, target=-0.5),
               Member(0, 0, copy_task(2), pre, n_floss=1), Member(1, 1, xor_task(2), pre, -1.0, 2)]
    ens = train(members, SMALL)
    for m, mb in enumerate(members):
        one = train([mb], SMALL)
        assert torch.allclose(ens.floss_loss[:, m], one.floss_loss[:, 0], atol=1e-9, rtol=0)
        assert torch.allclose(ens.network.J[m], one.network.J[0], atol=1e-9, rtol=0)
    fl0 = ens.floss_loss[:, :3]
    assert (fl0[:, 0] - fl0[:, 1]).abs().min() > 1e-3 and (fl0[:, 0] - fl0[:, 2]).abs().min() > 1e-6
    # the first flossing loss is the mean squared distance of the member's first n_floss
    # exponents to its own target: recompute it by hand from the exponents of the initial
    # network's first flossing step (the same draws: seed 0, step 0)
    net = init_gf_networks([0], SMALL.n_units, SMALL.batch_size)
    lam = Flosser(net, SMALL.flossing, [0]).step().exponents[0]
    expected = [(lam ** 2).mean(), ((lam + 0.5) ** 2).mean(), lam[0] ** 2]
    for m in range(3):
        assert abs(float(fl0[0, m]) - float(expected[m])) < 1e-10, m
    with pytest.raises(ValueError, match="exceeds the basis size"):
        train([Member(0, 0, copy_task(2), pre, n_floss=SMALL.flossing.k + 1)], SMALL)
    with pytest.raises(ValueError, match="n_floss"):
        Member(0, 0, copy_task(2), pre, n_floss=0)
    with pytest.raises(ValueError, match="target"):
        Member(0, 0, copy_task(2), pre, target=float("nan"))


def test_per_member_clipping_in_training():
    # A member whose raw gradient is huge (readout scaled 1e3) is clipped on its own: its neighbour
    # trains exactly as alone (1e-12), and every member's first update of each tensor has norm
    # <= lr * sqrt(numel) (Adam's first step is lr * sign(g) on every non-zero entry).
    cfg = TrainConfig(epochs=1, batch_size=2, seq_len=20, n_units=6, flossing=FlossingConfig(k=3, steps=15))
    members = [Member(0, 0, copy_task(2), schedule("none")), Member(1, 1, copy_task(2), schedule("none"))]
    net = init_gf_networks([0, 1], 6, 2)
    with torch.no_grad():
        net.w_r[1] *= 1e3
    before = net.clone()
    train(members, cfg, network=net)
    alone = init_gf_networks([0], 6, 2)
    train(members[:1], cfg, network=alone)
    assert torch.allclose(net.J.detach()[0], alone.J.detach()[0], atol=1e-12, rtol=0)
    step = (net.J.detach() - before.J).reshape(2, -1).norm(dim=1)
    assert bool((step <= 1e-3 * 6 + 1e-12).all())


def test_diverging_member_is_marked_and_others_go_on():
    # member 1 gets a NaN coupling: marked diverged at epoch 1, frozen; members 0 and 2 follow
    # their runs without it (1e-9).
    members = grid([0, 1, 2], [schedule("pre", pre_steps=3)], [copy_task(2)])
    net = init_gf_networks([0, 1, 2], SMALL.n_units, SMALL.batch_size)
    with torch.no_grad():
        net.J[1, 0, 0] = float("nan")
    res = train(members, SMALL, network=net)
    assert res.diverged_epoch.tolist() == [-1, 1, -1]
    assert torch.isnan(res.accuracy[:, 1]).all()
    ref = train([members[0], members[2]], SMALL)
    assert torch.allclose(res.loss[:, [0, 2]], ref.loss, atol=1e-9, rtol=0)
    assert torch.allclose(res.network.J.detach()[[0, 2]], ref.network.J.detach(), atol=1e-9, rtol=0)


def test_success_epoch_is_first_epoch_above_threshold():
    cfg = TrainConfig(epochs=40, batch_size=4, seq_len=30, n_units=12, success_threshold=0.6,
                      flossing=FlossingConfig(k=4, steps=20))
    res = train(grid([0, 1], [schedule("none")], [copy_task(1)]), cfg)
    for m in range(2):
        hits = (res.accuracy[:, m] >= 0.6).nonzero().flatten()
        expect = int(res.epochs[hits[0]]) if len(hits) else -1
        assert int(res.success_epoch[m]) == expect
    assert res.success.any()  # copy with delay 1 is learned above 0.6 within 40 epochs
    frame = res.frame()
    assert len(frame) == 2 * len(res.epochs) and set(frame.columns) >= {"epoch", "accuracy", "schedule"}


def test_stop_when_done_and_bad_config():
    cfg = TrainConfig(epochs=200, batch_size=4, seq_len=30, n_units=12, success_threshold=0.6,
                      stop_when_done=True, flossing=FlossingConfig(k=4, steps=20))
    res = train(grid([0], [schedule("none")], [copy_task(1)]), cfg)
    assert len(res.epochs) == int(res.success_epoch[0]) < 200
    with pytest.raises(ValueError, match="no scored step"):
        train(grid([0], [schedule("none")], [xor_task(20)]), cfg)
    with pytest.raises(ValueError, match="success_threshold"):
        TrainConfig(success_threshold=1.5)


def test_float32_training_with_float64_flossing():
    # a float32 ensemble is flossed in float64 (the cast is differentiable): its flossed parameters
    # move, stay float32, and the flossing losses agree with a float64 twin to float32 accuracy
    # (relative 1e-4 after 3 steps: the twin differs by the float32 rounding of its parameters).
    cfg = TrainConfig(epochs=2, batch_size=2, seq_len=20, n_units=8, dtype="float32",
                      flossing=FlossingConfig(k=4, steps=20, lr=0.01))
    res32 = train(grid([0], [schedule("pre", pre_steps=3)], [copy_task(2)]), cfg)
    assert res32.network.J.dtype == torch.float32 and torch.isfinite(res32.floss_loss).all()
    res64 = train(grid([0], [schedule("pre", pre_steps=3)], [copy_task(2)]),
                  TrainConfig(**{**cfg.__dict__, "dtype": "float64"}))
    assert torch.allclose(res32.floss_loss, res64.floss_loss, rtol=1e-4, atol=0)
