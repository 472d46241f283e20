"""The fair test of flossing on gated cells (floss_utils.flossing.gated_fair_test): its probes against
finite differences and a closed form, its design's refusals, its pairing and learning-rate grid against
plain training, and its decisions against hand-made runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from floss_utils.flossing import (QUESTIONS, CellNetwork, FlossingConfig, GatedDesign, GatedTestRun, Member, TrainConfig,
                                  copy_task, delay_gradients, fair_flossing,
                                  freezing_flossing, gated_claims_frame, gated_probe, gated_verdicts, side_by_side, describe_comparison, flossing_effect, claim_text,
                                  question_text, init_cell_networks,
                                  run_gated_test, sample_bits, schedule, train)
from floss_utils.flossing.gated_fair_test import GatedProbe

KINDS = ("gru", "lstm")


@pytest.mark.parametrize("kind", KINDS)
def test_delay_gradients_equal_finite_differences(kind):
    # ground truth: central differences of the single loss term l_{t+d} of one (network, sequence, start)
    net = init_cell_networks(kind, [3, 4], 5, 2, forget_bias=1.0)
    d, T = 4, 12
    s = sample_bits([3, 4], 7, 0, 0, T, 2)
    write, reach, signal = delay_gradients(net, s, d, [5, 6])
    assert write.shape == reach.shape == signal.shape == (2, 2, 2)
    states = net.run(s)
    eps = 1e-6
    for m, b, j, t in [(0, 0, 0, 5), (1, 1, 1, 6), (0, 1, 1, 6)]:
        sub = net.select([m])
        x_before = states[t - 1][m, b].view(1, 1, -1)

        def step(bit):
            return sub.step(x_before, torch.tensor([[bit]], dtype=torch.float64)).view(-1)

        def loss(x_t):
            x = x_t.view(1, 1, -1)
            for i in range(1, d + 1):
                x = sub.step(x, s[t + i][m:m + 1, b:b + 1])
            return F.binary_cross_entropy_with_logits(sub.readout(x).view(()), s[t][m, b])

        bit = float(s[t][m, b])
        x_t = step(bit)
        gx = torch.stack([(loss(x_t + eps * e) - loss(x_t - eps * e)) / (2 * eps)
                          for e in torch.eye(x_t.numel(), dtype=torch.float64)])
        dxds = (step(bit + eps) - step(bit - eps)) / (2 * eps)
        gs = (loss(step(bit + eps)) - loss(step(bit - eps))) / (2 * eps)
        assert float(reach[m, b, j]) == pytest.approx(float(gx.norm()), rel=1e-6)
        assert float(write[m, b, j]) == pytest.approx(float(dxds.norm()), rel=1e-6)
        assert float(signal[m, b, j]) == pytest.approx(abs(float(gs)), rel=1e-6)


def test_a_shut_update_gate_carries_the_state_unchanged():
    # closed form: with z = 1 the GRU's map is the identity, so h_{t+d} = h_t and
    # dl/dh_t = (sigmoid(r) - y) w_r with r = w_r . h_t + c; nothing is written (dx_t/ds_t = 0)
    net = init_cell_networks("gru", [0, 1], 6, 3)
    b = net.b.clone()
    b[:, 6:12] = 60.0  # sigmoid(60) = 1 to double precision
    shut = CellNetwork("gru", net.J, net.W_s, b, net.w_r, net.c, net.x0)
    s = sample_bits([0, 1], 7, 0, 0, 15, 3)
    write, reach, signal = delay_gradients(shut, s, 5, [4, 7])
    h = shut.x0  # the state never moves
    r = (h * shut.w_r.unsqueeze(1)).sum(-1) + shut.c.unsqueeze(-1)  # (M, B)
    for j, t in enumerate((4, 7)):
        expect = (torch.sigmoid(r) - s[t]).abs() * shut.w_r.norm(dim=-1, keepdim=True)
        assert torch.allclose(reach[..., j], expect, rtol=1e-12, atol=1e-15)
    assert float(write.max()) < 1e-20 and float(signal.max()) < 1e-20


def test_gated_probe_reads_the_carry_gate_and_refuses_bad_starts():
    net = init_cell_networks("lstm", [0, 1, 2], 4, 2, forget_bias=1.0)
    p = gated_probe(net, [0, 1, 2], 3, k=2, n_starts=4)
    # the GRU's counterpart: update_bias raises its update gate z
    gz = gated_probe(init_cell_networks("gru", [0, 1], 4, 2, update_bias=1.0), [0, 1], 3, k=2, n_starts=4)
    g0 = gated_probe(init_cell_networks("gru", [0, 1], 4, 2), [0, 1], 3, k=2, n_starts=4)
    assert bool((gz.carry_gate > g0.carry_gate).all())
    assert p.carry_gate.shape == p.write.shape == (3,) and p.exponents.shape == (3, 2)
    assert bool(((p.carry_gate > 0) & (p.carry_gate < 1)).all())
    # the forget bias +1 raises the forget gate above the unbiased cell's, network by network
    p0 = gated_probe(init_cell_networks("lstm", [0, 1, 2], 4, 2), [0, 1, 2], 3, k=2, n_starts=4)
    assert bool((p.carry_gate > p0.carry_gate).all())
    s = sample_bits([0, 1, 2], 7, 0, 0, 10, 2)
    with pytest.raises(ValueError, match="start steps"):
        delay_gradients(net, s, 3, [0])
    with pytest.raises(ValueError, match="start steps"):
        delay_gradients(net, s, 3, [7])
    with pytest.raises(ValueError, match="one seed per network"):
        gated_probe(net, [0, 1], 3, k=2)


def test_fair_and_freezing_flossing():
    fc = fair_flossing(20, lr=3e-3)
    assert fc.params == ("J",) and fc.k == 20 and fc.target == pytest.approx(-0.025)
    # a frozen cell misses the target: a GRU with its update gate shut has every exponent at 0 (to the estimator's
    # accuracy), so its flossing loss at -1/(2d) stays near (1/(2d))^2 instead of 0
    net = init_cell_networks("gru", [0, 1], 24, 1, update_bias=60.0)
    from floss_utils.flossing import evaluate_exponents, flossing_loss

    lam = evaluate_exponents(net, [0, 1], steps=120, k=fc.k)
    assert float(lam.abs().max()) < 1e-3
    assert torch.allclose(flossing_loss(lam, fc.target), torch.full((2,), fc.target ** 2, dtype=lam.dtype), rtol=0.1)
    ref = freezing_flossing(48, lr=3e-3)
    assert set(ref.params) == {"W_s", "J", "b"} and ref.k == 48 and ref.target == 0.0
    with pytest.raises(ValueError, match="delay"):
        fair_flossing(0, lr=1e-3)


def test_design_refuses_an_unfair_or_impossible_test():
    ok = dict(kind="gru", n_hidden=8, delay=4, seq_len=12, epochs=2, lrs=(1e-3,), pre_steps=1)
    assert GatedDesign(**ok).n_state == 8 and GatedDesign(**{**ok, "kind": "lstm"}).n_state == 16
    with pytest.raises(ValueError, match="twice the delay"):
        GatedDesign(**{**ok, "n_hidden": 7})
    with pytest.raises(ValueError, match="kind"):
        GatedDesign(**{**ok, "kind": "rnn"})
    with pytest.raises(ValueError, match="lrs"):
        GatedDesign(**{**ok, "lrs": ()})
    with pytest.raises(ValueError, match="lrs"):
        GatedDesign(**{**ok, "lrs": (1e-3, -1.0)})
    with pytest.raises(ValueError, match="seq_len"):
        GatedDesign(**{**ok, "seq_len": 4})
    with pytest.raises(ValueError, match="exceed the state size"):
        GatedDesign(**{**ok, "flossing": fair_flossing(4, lr=1e-3, k=9)})
    with pytest.raises(ValueError, match="epochs"):
        GatedDesign(**{**ok, "epochs": 0})


def test_member_learning_rates_train_like_separate_runs():
    # a learning-rate grid as one ensemble: each member follows the run with TrainConfig(lr=its rate)
    cfg = TrainConfig(epochs=6, batch_size=3, seq_len=20, n_units=6, lr=1e-3, flossing=FlossingConfig(k=2))
    members = [Member(0, 0, copy_task(2), schedule("none"), lr=1e-2), Member(0, 0, copy_task(2), schedule("none")),
               Member(1, 1, copy_task(3), schedule("none"), lr=3e-3)]
    ens = train(members, cfg)
    for m, mb in enumerate(members):
        one = train([Member(mb.net_seed, mb.data_seed, mb.task, mb.schedule)],
                    TrainConfig(epochs=6, batch_size=3, seq_len=20, n_units=6, lr=mb.lr or 1e-3,
                                flossing=FlossingConfig(k=2)))
        assert torch.allclose(ens.loss[:, m], one.loss[:, 0], atol=1e-10, rtol=0)
        assert torch.allclose(ens.network.J[m], one.network.J[0], atol=1e-10, rtol=0)
    assert not torch.allclose(ens.network.J[0], ens.network.J[1])  # the two rates of seed 0 differ
    with pytest.raises(ValueError, match="Member.lr"):
        Member(0, 0, copy_task(2), schedule("none"), lr=0.0)
    with pytest.raises(ValueError, match="Member.lr"):
        Member(0, 0, copy_task(2), schedule("none"), lr=float("nan"))


@pytest.mark.parametrize("kind", KINDS)
def test_run_pairs_conditions_and_flosses_the_recurrent_weights_only(kind):
    d = GatedDesign(kind=kind, n_hidden=6, delay=3, seq_len=12, epochs=4, lrs=(1e-3, 1e-2), pre_steps=3,
                    floss_lr=0.01, batch_size=2, eval_every=2)
    seeds = [5, 6]
    run = run_gated_test(d, seeds)
    assert list(run.runs.condition) == ["unflossed"] * 4 + ["flossed"] * 4
    assert list(run.runs.lr) == [1e-3, 1e-3, 1e-2, 1e-2] * 2 and list(run.runs.seed) == seeds * 4
    assert set(run.probes) == {"initial", "flossed", "reference"}
    # the unflossed members are plain training of the initial networks at their rate (forget bias +1)
    for j, lr in enumerate(d.lrs):
        plain = train([Member(s, s, copy_task(3), schedule("none")) for s in seeds],
                      TrainConfig(epochs=4, batch_size=2, seq_len=12, lr=lr, n_units=6, eval_every=2,
                                  flossing=FlossingConfig(k=1)),
                      network=init_cell_networks(kind, seeds, 6, 2, forget_bias=1.0, update_bias=1.0))
        got = run.runs.iloc[2 * j:2 * j + 2]
        assert np.allclose(got.final_accuracy, plain.accuracy[-1].numpy(), atol=1e-12)
    # the fair flossing moved J only: input weights and biases are those of the initial networks
    init = init_cell_networks(kind, seeds, 6, 2, forget_bias=1.0, update_bias=1.0)
    from floss_utils.flossing.gated_fair_test import _floss

    flossed, failed = _floss(init, seeds, d.fair, d.pre_steps)
    assert not bool(failed.any())
    assert torch.equal(flossed.W_s, init.W_s) and torch.equal(flossed.b, init.b)
    assert not torch.allclose(flossed.J, init.J)
    # ... and the flossed members are plain training of those flossed networks
    for j, lr in enumerate(d.lrs):
        plain = train([Member(s, s, copy_task(3), schedule("none")) for s in seeds],
                      TrainConfig(epochs=4, batch_size=2, seq_len=12, lr=lr, n_units=6, eval_every=2,
                                  flossing=FlossingConfig(k=1)), network=flossed.clone())
        got = run.runs.iloc[4 + 2 * j:4 + 2 * j + 2]
        assert np.allclose(got.final_accuracy, plain.accuracy[-1].numpy(), atol=1e-12)
    assert len(run.by_rate()) == 2 and set(run.by_rate().columns) >= {"lr", "difference", "p_higher"}
    assert run.curves.shape == (len(run.epochs), 8) and list(run.epochs) == [2, 4]
    table = run.probe_table()
    assert len(table) == 3 * len(seeds) and set(table.probe) == {"initial", "flossed", "reference"}


def _hand_made_run(val, final, success) -> GatedTestRun:
    d = GatedDesign(kind="gru", n_hidden=4, delay=2, seq_len=8, epochs=1, lrs=(0.1, 0.2), pre_steps=1)
    layout = [(c, lr, s) for c in ("unflossed", "flossed") for lr in d.lrs for s in (0, 1, 2)]
    runs = pd.DataFrame({"cell": "gru", "condition": [c for c, _, _ in layout], "lr": [lr for _, lr, _ in layout],
                         "seed": [s for *_, s in layout], "final_accuracy": final, "validation_accuracy": val,
                         "success_epoch": success, "diverged_epoch": [-1] * 12})
    one = torch.ones(3, dtype=torch.float64)
    probe = GatedProbe(0.5 * one, one, one, one, torch.zeros(3, 2, dtype=torch.float64))
    up = GatedProbe(0.7 * one, 0.5 * one, 4 * one, 2 * one, torch.zeros(3, 2, dtype=torch.float64))
    return GatedTestRun(d, [0, 1, 2], {"initial": probe, "flossed": up}, torch.zeros(3, dtype=torch.bool), runs,
                        np.zeros((1, 12)), np.array([1]))


def test_learning_rate_choice_and_claims_on_hand_made_runs():
    # unflossed: rate 0.2 has the higher median validation accuracy; flossed: 0.1 (a diverged member = -1)
    val = [0.6, 0.6, 0.6, 0.7, 0.7, 0.7] + [0.9, 0.9, 0.9, 0.95, np.nan, np.nan]
    final = [0.5, 0.5, 0.5, 0.6, 0.7, 0.8] + [0.9, 0.9, 1.0, 0.99, np.nan, np.nan]
    success = [-1, -1, -1, -1, -1, 40] + [30, 20, 10, -1, -1, -1]
    run = _hand_made_run(val, final, success)
    assert run.chosen_lr() == {"unflossed": 0.2, "flossed": 0.1}
    chosen = run.at_chosen()
    assert list(chosen.final_accuracy) == [0.6, 0.7, 0.8, 0.9, 0.9, 1.0]
    c = run.claims()
    assert c.accuracy.mean == pytest.approx(0.7 / 3) and c.accuracy.n_greater == 3 and c.accuracy.p_greater == 0.125
    assert c.success["flossed"][:2] == (3, 3) and c.success["unflossed"][:2] == (1, 3)
    assert c.faster == (3, 0, 0.125)  # seed 2: flossed 10 < unflossed 40; seeds 0, 1: never unflossed
    assert c.probe["signal"].mean == pytest.approx(math.log(2)) and c.probe["write"].n_greater == 0
    assert c.probe["carry_gate"].mean == pytest.approx(0.2) and c.reference_probe == {}
    frame = gated_claims_frame({"gru": c})
    row = frame[frame.quantity == "final accuracy, flossed - unflossed"].iloc[0]
    assert row.estimate == pytest.approx(0.7 / 3) and row.n_for == 3 and row.n == 3
    assert row.p_lower == 1.0  # no seed lower: the opposite direction's sign-flip p is 1
    assert run.chosen_at_edge() == {"unflossed": True, "flossed": True}  # a grid of two rates: both are edges
    tied = _hand_made_run(val, final[:6] + [0.6, 0.9, 1.0, 0.99, np.nan, np.nan], success).claims()
    assert tied.accuracy_untied == 2  # seed 0 ties (0.6 and 0.6): it carries no sign
    tied_row = gated_claims_frame({"gru": tied}).iloc[0]
    assert (tied_row.n_for, tied_row.n_lower, tied_row.n_untied, tied_row.n) == (2, 0, 2, 3)
    side = side_by_side({"a": frame, "b": frame.assign(estimate=frame.estimate * 2)},
                        ["success rate, flossed", "final accuracy, flossed - unflossed"])
    assert list(side.quantity) == ["success rate, flossed", "final accuracy, flossed - unflossed"]
    assert side.a.iloc[1].startswith("+0.233 [") and side.a.iloc[1].endswith("3 up / 0 down, p 0.12 / 1")
    assert side.b.iloc[1].startswith("+0.467 [") and side.a.iloc[0] == "3 of 3 [0.44, 1.00]"
    assert describe_comparison(frame, "gru", "success rate, unflossed") == "1 of 3 (95 % Wilson 0.06 to 0.79)"
    assert describe_comparison(frame, "gru", "reaches success sooner, flossed") == "3 of 3 seeds whose two networks differ, p = 0.12"
    assert describe_comparison(frame, "gru", "final accuracy, flossed - unflossed").endswith("higher for 3 of 3 seeds, p = 0.12")
    assert describe_comparison(frame, "gru", "final accuracy, flossed - unflossed", "down").endswith("lower for 0 of 3 seeds, p = 1")
    with pytest.raises(KeyError, match="no single row"):
        describe_comparison(frame, "lstm", "success rate, unflossed")
    v = gated_verdicts(frame).set_index("question")
    assert set(v.index) == {"accuracy", "fair_signal", "fair_signal_fall", "fair_gate", "fair_write"}  # no reference
    assert (v.verdict == "not decidable").all()  # 3 seeds: 2^-3 > 0.05


def test_verdicts_decide_each_question_over_the_cells_by_holm():
    # hand-made frame: two cells, 8 seeds each; Holm over the cells of one question
    # (both one-sided p-values set alike, so that questions of either direction read the same numbers)
    rows = []
    for quantity in sorted({q for q, _ in QUESTIONS.values()}):
        for cell, p in (("gru", 0.004), ("lstm", 0.04)):
            rows.append(dict(cell=cell, quantity=quantity, n=8, n_untied=8, p=p, p_lower=p))
    v = gated_verdicts(pd.DataFrame(rows)).set_index(["question", "cell"]).verdict
    # 0.004 <= 0.05 / 2, then 0.04 <= 0.05 / 1: both rejected, for every question
    assert (v == "yes").all() and len(v) == 2 * len(QUESTIONS)
    thr = gated_verdicts(pd.DataFrame(rows)).set_index(["question", "cell"]).threshold
    assert (thr.xs("gru", level="cell") == 0.025).all() and (thr.xs("lstm", level="cell") == 0.05).all()
    rows = [dict(r, p=0.03 if r["cell"] == "gru" else r["p"], p_lower=0.03 if r["cell"] == "gru" else r["p_lower"])
            for r in rows]
    v = gated_verdicts(pd.DataFrame(rows)).set_index(["question", "cell"]).verdict
    # 0.03 > 0.025 stops Holm at its first step: neither cell is decided yes, and 8 seeds could have
    assert (v == "not shown").all()
    thr = gated_verdicts(pd.DataFrame(rows)).set_index(["question", "cell"]).threshold
    assert (thr.xs("gru", level="cell") == 0.025).all() and thr.xs("lstm", level="cell").isna().all()  # never reached
    few = [dict(r, n_untied=5) for r in rows]  # e.g. 3 of 8 seeds tied at the same accuracy: no sign
    assert (gated_verdicts(pd.DataFrame(few)).verdict == "not decidable").all()  # 2^-5 > 0.025
    # beside a cell that passes (0.004 <= 0.025), 5 untied seeds meet Holm's second threshold 0.05 > 2^-5: the
    # test could have decided, so its failure is "not shown", not "not decidable"
    mixed = [dict(r, p=0.004, p_lower=0.004) if r["cell"] == "gru" else dict(r, n_untied=5, p=0.2, p_lower=0.2)
             for r in rows]
    v = gated_verdicts(pd.DataFrame(mixed)).set_index(["question", "cell"]).verdict
    assert (v.xs("gru", level="cell") == "yes").all() and (v.xs("lstm", level="cell") == "not shown").all()


def test_flossing_effect_reads_the_verdicts_and_the_sizes():
    def frame(signal_p, signal_p_lower, signal_log):
        rows = []
        for which, gate, reach, write in (("fair", 0.1, math.log(4), math.log(0.5)), ("freezing", 0.2, math.log(8),
                                                                                        math.log(0.1))):
            for what, e in (("change of the mean carry gate", gate), ("log change of reach", reach),
                            ("log change of write", write), ("log change of signal", signal_log)):
                rows.append(dict(cell="gru", quantity=f"{which} flossing: {what}", estimate=e, n=8, n_untied=8,
                                 p=signal_p if "signal" in what else (0.004 if e > 0 else 1.0),
                                 p_lower=signal_p_lower if "signal" in what else (1.0 if e > 0 else 0.004)))
        return pd.DataFrame(rows)

    up = frame(0.004, 1.0, math.log(3))
    text = flossing_effect(up, gated_verdicts(up), "gru")
    assert text.startswith("raises the gradient signal (x3)") and "raises the carry gate by +0.10, 50% of" in text
    assert text.endswith("reach x4 and write x0.5, against x8 and x0.1 for the freezing flossing")
    down = frame(1.0, 0.004, math.log(0.2))
    assert flossing_effect(down, gated_verdicts(down), "gru").startswith("lowers the gradient signal (x0.2)")
    flat = frame(0.3, 0.7, math.log(1.1))
    assert flossing_effect(flat, gated_verdicts(flat), "gru").startswith("changes the gradient signal by no detectable")


def _question_frame(p_gru: float, p_lstm: float, n_untied: int = 8) -> pd.DataFrame:
    """Every quantity of QUESTIONS for two cells, both one-sided p-values alike, estimates of +0.01 [-0.002, +0.02]."""
    return pd.DataFrame([dict(cell=cell, quantity=q, estimate=0.01, lo=-0.002, hi=0.02, n=8, n_untied=n_untied, n_for=6,
                              n_lower=2, p=p, p_lower=p)
                         for q in sorted({q for q, _ in QUESTIONS.values()}) for cell, p in (("gru", p_gru), ("lstm", p_lstm))])


def test_claim_text_says_the_verdict_the_threshold_and_the_fall():
    f = _question_frame(0.004, 0.04)  # Holm: 0.004 <= 0.025, then 0.04 <= 0.05
    assert claim_text(f, gated_verdicts(f), "lstm") == (
        "supported: flossed minus unflossed +0.01 (95 % bootstrap interval -0.002 to +0.02), higher for 6 of 8 seeds, "
        "p = 0.04 (Holm's threshold at its rank 0.05; the opposite direction, a fall: p = 0.04)")
    f = _question_frame(0.03, 0.04)  # 0.03 > 0.025: Holm stops at the GRU, never compares the LSTM's p
    assert claim_text(f, gated_verdicts(f), "lstm").startswith("not shown at family-wise 0.05: ")
    assert "(Holm stopped at the other cell's smaller p;" in claim_text(f, gated_verdicts(f), "lstm")
    f = _question_frame(0.03, 0.04, n_untied=4)  # 2^-4 > 0.05: no outcome could pass
    assert claim_text(f, gated_verdicts(f), "gru").startswith("not decidable (too few seeds whose two networks differ)")


def test_question_text_follows_the_verdict_and_the_direction():
    f = _question_frame(0.004, 0.3)
    v = gated_verdicts(f)
    assert question_text(f, v, "fair_gate", "gru") == ("it raises the carry gate: +0.01 (95 % bootstrap interval -0.002 "
                                                       "to +0.02), higher for 6 of 8 seeds, p = 0.004")
    # a fall: the seeds lower and the p of a fall
    assert question_text(f, v, "fair_write", "lstm") == ("that it lowers the write is not shown: +0.01 (95 % bootstrap "
                                                         "interval -0.002 to +0.02), lower for 2 of 8 seeds, p = 0.3")
    few = _question_frame(0.3, 0.3, n_untied=3)
    assert question_text(few, gated_verdicts(few), "freezing_signal", "gru").startswith(
        "too few seeds to say whether it raises the signal: ")
    with pytest.raises(KeyError, match="no words"):
        question_text(f, v, "accuracy", "gru")
