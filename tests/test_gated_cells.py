"""Gated cells for Part III: the step against torch's GRUCell/LSTMCell, exponents through JVPs
against an explicit autograd Jacobian, gradcheck of the flossing loss through a GRU, flossing
reduces the flossing loss, and the ensemble trainer on cells. Small sizes; float64. Tolerances
stated per test."""

from __future__ import annotations

import pytest
import torch

from floss_utils.flossing.gated_cells import (GATE_NAMES, CellNetwork, cell_step, gate_values,
                                              init_cell_networks)
from floss_utils.flossing.flosser import (FlossingConfig, Flosser, compare_before_after_flossing,
                                          evaluate_exponents, flossing_loss, network_exponents)
from floss_utils.lyapunov.estimator import lyapunov_spectrum
from floss_utils.flossing.trainer import Member, TrainConfig, schedule, train
from floss_utils.flossing.tasks import copy_task, xor_task

KINDS = ("gru", "lstm")


@pytest.mark.parametrize("kind", KINDS)
def test_step_equals_torch_cell(kind):
    # ground truth: torch.nn.GRUCell / LSTMCell with our weights (bias_hh = 0); 1e-13 = round-off
    net = init_cell_networks(kind, [3, 4], n_hidden=5, batch_size=2)
    torch.manual_seed(0)
    x = torch.randn(2, 2, net.n_units, dtype=torch.float64)
    s = torch.randint(0, 2, (2, 2)).double()
    out = net.step(x, s)
    N = net.n_hidden
    for m in range(2):
        cls = torch.nn.GRUCell if kind == "gru" else torch.nn.LSTMCell
        cell = cls(1, N).double()
        with torch.no_grad():
            cell.weight_hh.copy_(net.J[m])
            cell.weight_ih.copy_(net.W_s[m].unsqueeze(-1))
            cell.bias_ih.copy_(net.b[m])
            cell.bias_hh.zero_()
            if kind == "gru":
                ref = cell(s[m].unsqueeze(-1), x[m])
            else:
                h, c = cell(s[m].unsqueeze(-1), (x[m, :, :N], x[m, :, N:]))
                ref = torch.cat([h, c], -1)
        assert torch.allclose(out[m], ref, atol=1e-13, rtol=0)


def _reference_exponents(net: CellNetwork, bits: torch.Tensor, q0: torch.Tensor, transient: int) -> torch.Tensor:
    """Independent QR algorithm: the full Jacobian of each member's step from
    torch.autograd.functional.jacobian, Householder QR every step."""
    M = net.n_members
    out = []
    for m in range(M):
        x = net.x0[m, 0].clone()
        Q = q0[m].clone()
        acc = torch.zeros(Q.shape[-1], dtype=torch.float64)
        sub = net.select([m])
        for t in range(bits.shape[0]):
            s = bits[t, m].reshape(1, 1)

            def f(v):
                return cell_step(sub.kind, sub.J, sub.W_s, sub.b, v.reshape(1, 1, -1), s).reshape(-1)

            D = torch.autograd.functional.jacobian(f, x)
            x = f(x)
            Q, R = torch.linalg.qr(D @ Q)
            if t >= transient:
                acc += torch.log(torch.abs(torch.diagonal(R)))
        out.append(acc / (bits.shape[0] - transient))
    return torch.stack(out)


@pytest.mark.parametrize("kind", KINDS)
def test_jvp_exponents_equal_explicit_jacobian(kind):
    # exponents via CellMap (forward-mode JVPs, the flossing path) vs the explicit Jacobian per
    # step; same trajectory, same Q_0: equal to round-off (1e-10 over 40 QR steps)
    net = init_cell_networks(kind, [0, 1, 2], n_hidden=6, batch_size=2, gain=1.5)
    T, k, transient = 40, 4, 8
    bits = torch.randint(0, 2, (T, 3), generator=torch.Generator().manual_seed(1)).double()
    q0 = torch.linalg.qr(torch.randn(3, net.n_units, k, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(2)))[0]
    ref = _reference_exponents(net, bits, q0, transient)
    lam = network_exponents(net, bits, k=k, transient=transient, q0=q0, reorth="qr")  # the closed-form tangents
    assert torch.allclose(lam, ref, atol=1e-10, rtol=0)
    # forward-mode JVPs, folded into the batch or vmapped over the tangent columns, give the same numbers
    for tangents in ("fold", "vmap"):
        other = lyapunov_spectrum(net.recurrent_map(tangents), net.x0[:, 0], net.drive(bits), steps=T - transient,
                                  k=k, transient=transient, q0=q0, reorth="qr").exponents
        assert torch.allclose(other, ref, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="tangents must be one of"):
        net.recurrent_map("stacked")


@pytest.mark.parametrize("kind", KINDS)
def test_cell_tangent_equals_forward_mode_and_finite_differences(kind):
    # ground truths for the written-out Jacobian: forward-mode automatic differentiation of cell_step (the step's
    # own equations, no hand-written derivative) to round-off, and central finite differences to O(eps^2)
    import torch.autograd.forward_ad as fwAD
    from floss_utils.flossing import cell_step, cell_tangent

    net = init_cell_networks(kind, [0, 1, 2], n_hidden=5, batch_size=1, gain=2.0)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, net.n_units, dtype=torch.float64, generator=g)
    s = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    Q = torch.randn(3, net.n_units, 4, dtype=torch.float64, generator=g)
    closed = cell_tangent(kind, net.J, net.W_s, net.b, x, s, Q)
    step = lambda v: cell_step(kind, net.J, net.W_s, net.b, v.unsqueeze(1), s.unsqueeze(1)).squeeze(1)
    for j in range(Q.shape[-1]):
        with fwAD.dual_level():
            jvp = fwAD.unpack_dual(step(fwAD.make_dual(x, Q[..., j]))).tangent
        assert torch.allclose(closed[..., j], jvp, atol=1e-13, rtol=0)
        eps = 1e-5
        fd = (step(x + eps * Q[..., j]) - step(x - eps * Q[..., j])) / (2 * eps)
        assert torch.allclose(closed[..., j], fd, atol=1e-8, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_flossing_gradients_of_the_written_out_tangents_equal_those_of_forward_mode(kind):
    # the parameters' gradient of a flossing loss (reverse mode through every tangent and QR of 20 steps) with the
    # written-out Jacobian and with folded dual numbers: the same to round-off, for both cells
    from floss_utils.flossing import flossing_loss

    base = init_cell_networks(kind, [0, 1], n_hidden=5, batch_size=1, gain=1.5)
    bits = torch.randint(0, 2, (20, 2), generator=torch.Generator().manual_seed(4)).double()
    q0 = torch.linalg.qr(torch.randn(2, base.n_units, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5)))[0]
    grads = {}
    for tangents in ("closed_form", "fold"):
        params = [p.detach().clone().requires_grad_(True) for p in (base.J, base.W_s, base.b)]
        net = CellNetwork(kind, *params, base.w_r, base.c, base.x0)
        lam = lyapunov_spectrum(net.recurrent_map(tangents), net.x0[:, 0], net.drive(bits), steps=16, k=3,
                                transient=4, q0=q0, reorth="qr").exponents
        grads[tangents] = torch.autograd.grad(flossing_loss(lam, -0.2).sum(), params)
    for a, b in zip(grads["closed_form"], grads["fold"]):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)


def test_gradcheck_flossing_loss_through_gru():
    # float64 gradcheck (finite differences, torch's default tolerances; fast mode: random
    # projections of the Jacobian, which fail whenever the full check would, with probability ~1)
    # of the flossing loss with respect to J, W_s, b through a GRU trajectory of 10 steps, k = 3
    # of N = 6: reverse mode through the written-out tangents (cell_tangent) and every QR
    base = init_cell_networks("gru", [5], n_hidden=6, batch_size=1, gain=1.2)
    bits = torch.tensor([[1.0], [0.0], [1.0], [1.0], [0.0], [0.0], [1.0], [0.0], [1.0], [1.0]])
    q0 = torch.linalg.qr(torch.randn(1, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))[0]

    def loss(J, W_s, b):
        net = CellNetwork("gru", J, W_s, b, base.w_r, base.c, base.x0)
        lam = network_exponents(net, bits, k=3, transient=2, q0=q0, reorth="qr")
        return flossing_loss(lam, -0.2)

    inputs = tuple(t.clone().requires_grad_(True) for t in (base.J, base.W_s, base.b))
    assert torch.autograd.gradcheck(loss, inputs, fast_mode=True)


@pytest.mark.parametrize("kind", KINDS)
def test_flossing_reduces_flossing_loss(kind):
    # 60 flossing steps (lr 0.02, k = 6 of S): the mean flossing loss over the last 10 steps is
    # below half of the first step's, for every member (GF: flossing drives the exponents to 0)
    net = init_cell_networks(kind, [0, 1], n_hidden=8, batch_size=2, gain=1.0)
    fl = Flosser(net, FlossingConfig(k=6, steps=30, lr=0.02, target=0.0), seeds=[0, 1])
    hist = fl.run(60)["loss"]
    assert bool((hist[-10:].mean(0) < 0.5 * hist[0]).all()), hist[[0, -1]]
    assert torch.isfinite(hist).all()


@pytest.mark.parametrize("kind", KINDS)
def test_trainer_on_cells_ensemble_equals_members_alone(kind):
    # the Part III trainer with a CellNetwork: 3 members (schedules none/pre/both) together vs
    # one by one, same histories and parameters to 1e-9 (batched vs single BLAS round-off)
    cfg = TrainConfig(epochs=8, batch_size=3, seq_len=25, n_units=5, clip=0.03,
                      flossing=FlossingConfig(k=3, steps=20, lr=0.01), exponents_every=4)
    members = [Member(0, 0, copy_task(2), schedule("none")),
               Member(1, 1, xor_task(3), schedule("pre", pre_steps=3)),
               Member(2, 0, xor_task(2), schedule("both", 2, 2, 4, 1))]
    ens = train(members, cfg, network=init_cell_networks(kind, [0, 1, 2], 5, 3))
    assert ens.exponents.shape[-1] == 3 and torch.isfinite(ens.exponents).all()
    for m, mb in enumerate(members):
        one = train([mb], cfg, network=init_cell_networks(kind, [mb.net_seed], 5, 3))
        for name in ("loss", "accuracy", "grad_norm_x0"):
            assert torch.allclose(getattr(ens, name)[:, m], getattr(one, name)[:, 0], atol=1e-9, rtol=0,
                                  equal_nan=True), (m, name)
        for name in ("J", "W_s", "b", "w_r", "c", "x0"):
            assert torch.allclose(getattr(ens.network, name)[m], getattr(one.network, name)[0], atol=1e-9, rtol=0)
    # training changed the network (the task step reaches the cell's parameters)
    assert not torch.allclose(ens.network.J, init_cell_networks(kind, [0, 1, 2], 5, 3).J)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="kind"):
        init_cell_networks("rnn", [0], 4, 1)
    net = init_cell_networks("lstm", [0], 4, 1)
    assert net.n_units == 8 and net.n_hidden == 4
    with pytest.raises(ValueError, match="x0"):
        CellNetwork("gru", net.J[:, :12], net.W_s[:, :12], net.b[:, :12], net.w_r, net.c, net.x0)
    with pytest.raises(ValueError, match="unknown CellNetwork parameter"):
        net.tensors(["W"])
    with pytest.raises(ValueError, match="inputs"):
        net.drive(torch.zeros(5))


def test_summaries_of_a_synthetic_run():
    # member_table / success_summary / longest_bridged on a hand-made result whose answers are
    # known: exact equality
    from types import SimpleNamespace

    from floss_utils.flossing.summaries import longest_bridged, member_table, success_summary

    sch = [schedule("none"), schedule("pre", pre_steps=1)]
    members = [Member(s, s, xor_task(d), sc) for d in (2, 4) for sc in sch for s in (0, 1)]
    acc = torch.full((4, 8), float("nan"), dtype=torch.float64)
    acc[1::2] = torch.tensor([[0.5, 0.5, 0.9, 0.97, 0.5, 0.5, 0.5, 0.96]] * 2, dtype=torch.float64)
    succ = torch.tensor([-1, -1, 4, 2, -1, -1, -1, 4])
    res = SimpleNamespace(members=members, accuracy=acc, success_epoch=succ,
                          diverged_epoch=torch.full((8,), -1), epochs=torch.arange(1, 5))
    tab = member_table(res, window=1)
    assert tab["success"].tolist() == [False, False, True, True, False, False, False, True]
    assert tab["final_accuracy"].tolist()[2] == 0.9
    summ = success_summary(tab)
    pre = summ[summ.schedule == "pre"].set_index("delay")
    assert pre.loc[2, "success_rate"] == 1.0 and pre.loc[4, "success_rate"] == 0.5
    assert pre.loc[2, "median_epochs"] == 3.0
    lb = longest_bridged(summ, 0.5).set_index("schedule")["longest_delay"]
    assert lb["pre"] == 4 and lb["none"] == 0
    assert longest_bridged(summ, 1.0).set_index("schedule")["longest_delay"]["pre"] == 2


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_gate_values_are_the_memory_jacobian_without_coupling(kind):
    # With J = 0 the gates do not depend on the state, and the step's Jacobian is diagonal in the
    # gated memory: GRU dh'/dh = diag(z); LSTM dc'/dc = diag(f). Autograd gives the Jacobian
    # independently of gate_values; agreement to round-off (1e-12).
    net = init_cell_networks(kind, [0, 1], n_hidden=5, batch_size=3, gain=1.3)
    net = CellNetwork(kind, torch.zeros_like(net.J), net.W_s, 2.0 * net.b - 0.3, net.w_r, net.c, net.x0)
    s = torch.bernoulli(torch.full((4, 2, 3), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    gates = gate_values(net, s)
    assert set(gates) == set(GATE_NAMES[kind])
    x = net.x0
    for t in range(4):
        jac = torch.autograd.functional.jacobian(lambda y: net.step(y, s[t]), x)  # (M, B, S, M, B, S)
        N = net.n_hidden
        for m in range(2):
            for b in range(3):
                block = jac[m, b, :, m, b, :]
                diag = block[:N, :N] if kind == "gru" else block[N:, N:]
                key = "z" if kind == "gru" else "f"
                assert torch.allclose(diag, torch.diag(gates[key][t, m, b]), atol=1e-12)
        x = net.step(x, s[t])
    for g in gates.values():
        assert g.shape == (4, 2, 3, 5) and bool(((g > 0) & (g < 1)).all())


def test_compare_before_after_flossing_reports_the_flossed_change():
    # The comparison flosses in place and measures before and after on the same bits: its
    # "before" equals a measurement of an untouched copy, its "after" one of the flossed network,
    # flossing toward 0 shrinks the squared exponents, and the probe sees the gate move.
    seeds = [0, 1]
    net = init_cell_networks("gru", seeds, 6, 2)
    untouched = net.clone()
    s = torch.randint(0, 2, (30, 2, 2), generator=torch.Generator().manual_seed(3)).double() * 2 - 1
    cfg = FlossingConfig(k=4, steps=30, lr=0.05)
    cmp = compare_before_after_flossing(net, seeds, cfg, 40, exponent_steps=120,
                                        probe=lambda n: gate_values(n, s)["z"].mean())
    torch.testing.assert_close(cmp.exponents_before, evaluate_exponents(untouched, seeds, steps=120, k=4))
    torch.testing.assert_close(cmp.exponents_after, evaluate_exponents(net, seeds, steps=120, k=4))
    assert bool((flossing_loss(cmp.exponents_after) < flossing_loss(cmp.exponents_before)).all())
    assert float(cmp.probe_before) == float(gate_values(untouched, s)["z"].mean())
    assert float(cmp.probe_after) != float(cmp.probe_before)
    with pytest.raises(ValueError, match="steps"):
        compare_before_after_flossing(net, seeds, cfg, -1, exponent_steps=10)
