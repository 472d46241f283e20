"""The deep recurrent stack at initialization: structure, initialization ranges, ground truths.

Float64 where outputs are compared to an independent implementation (tolerance 1e-10 relative:
round-off of a few hundred operations); initialization ranges are exact inequalities; the
chrono bias distribution is checked by its mean with a 5-sigma Monte Carlo tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from floss_utils.curse_of_memory import deep_stacks as deep
from floss_utils.curse_of_memory.scans import diagonal_recurrence

from conftest import F64, gen

MEMORIES = [1.0, 10**0.5, 10.0, 10**1.5, 100.0]
SMALL = dict(d_input=12, d_model=8, n_blocks=2, dtype=F64)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def x_in(B=3, T=20, d=12, seed=0):
    return torch.randn(B, T, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_memory_ring_values_and_errors():
    assert deep.memory_ring(1) == (1.0, 2.0, 0.0, 0.5)
    t_min, t_max, r_min, r_max = deep.memory_ring(100.0)
    assert (t_min, t_max) == (100.0, 200.0) and abs(r_min - 0.99) < 1e-15 and abs(r_max - 0.995) < 1e-15
    for bad in (0.5, float("nan"), "10", True):
        with pytest.raises(ValueError, match="characteristic time"):
            deep.memory_ring(bad)


@pytest.mark.parametrize("layer", deep.LAYERS)
@pytest.mark.parametrize("norm", deep.NORMS)
def test_shapes_and_every_parameter_in_exactly_one_group(layer, norm):
    net = deep.DeepRecurrentStack(layer, norm, [1.0, 100.0], [0, 0], **SMALL)
    out, states = net(x_in())
    assert out.shape == (2, 3, 20, 12)
    assert len(states) == 2 and all(h.shape == (2, 3, 20, 8) for h in states)
    names = [n for ns in net.param_groups().values() for n in ns]
    assert sorted(names) == sorted(n for n, _ in net.named_parameters())  # complete, no duplicates
    assert len(names) == len(set(names))
    groups = set(g.split("/")[0] for g in net.param_groups())
    expected = {"encoder", "decoder", "feedforward"} | set(deep._LAYER_GROUPS[layer]) | ({"norm"} if norm != "none" else set())
    assert groups == expected


@pytest.mark.parametrize("layer", ["complex", "lru"])
def test_diagonal_layers_draw_lambda_on_the_memory_ring(layer):
    net = deep.DeepRecurrentStack(layer, "none", MEMORIES, [3] * 5, d_input=12, d_model=8, d_hidden=200, n_blocks=1, dtype=F64)
    blk = net.blocks[0]
    mod = blk.lam().detach().abs()
    for m, t in enumerate(MEMORIES):
        _, _, r_min, r_max = deep.memory_ring(t)
        lo = max(r_min, 1e-6) if layer == "lru" else r_min
        assert float(mod[m].min()) >= lo - 1e-12 and float(mod[m].max()) <= r_max + 1e-12
        assert float(mod[m].max()) > r_min + 0.8 * (r_max - r_min)  # fills the ring (200 draws)
    if layer == "lru":
        assert rel(torch.exp(blk.gamma_log).detach(), torch.sqrt(1 - mod**2)) < 1e-12
        ang = torch.angle(blk.lam().detach())
        assert rel(torch.remainder(ang, 2 * math.pi), torch.exp(blk.theta_log).detach()) < 1e-10


def test_gru_chrono_bias_range_and_distribution():
    net = deep.DeepRecurrentStack("gru", "none", MEMORIES, [1] * 5, d_input=12, d_model=8, d_hidden=4000, n_blocks=1, dtype=F64)
    b = net.blocks[0].b_z.detach()
    for m, t in enumerate(MEMORIES):
        t_min, t_max, _, _ = deep.memory_ring(t)
        assert float(b[m].min()) >= math.log(t_min) - 1e-12 and float(b[m].max()) <= math.log(t_max) + 1e-12
        # exp(b) ~ U[t_min, t_max]: mean (t_min + t_max)/2, sd (t_max - t_min)/sqrt(12 n)
        sd = (t_max - t_min) / math.sqrt(12 * 4000)
        assert abs(float(torch.exp(b[m]).mean()) - (t_min + t_max) / 2) < 5 * sd + 1e-12
    assert float(net.blocks[0].b_r.detach().abs().max()) == 0.0


@pytest.mark.parametrize("layer", ["complex", "lru"])
def test_diagonal_layer_output_matches_explicit_recursion(layer):
    # Ground truth: the plain loop h_t = lambda h_{t-1} + (gamma) B u_t, y = Re(C h) + D u.
    net = deep.DeepRecurrentStack(layer, "none", [10.0, 100.0], [0, 1], **SMALL)
    blk = net.blocks[0]
    u = torch.randn(2, 3, 50, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    y, h = blk.recurrence(u)
    Bw = torch.complex(blk.B_re, blk.B_im)
    if layer == "lru":
        Bw = torch.exp(blk.gamma_log)[..., None] * Bw
    b = torch.einsum("mbtd,mhd->mbth", u.to(torch.complex128), Bw)
    h_ref = diagonal_recurrence(blk.lam()[:, None, :], b)
    y_ref = torch.einsum("mbth,mdh->mbtd", h_ref, torch.complex(blk.C_re, blk.C_im)).real + blk.D[:, None, None, :] * u
    assert rel(h, h_ref) < 1e-10 and rel(y, y_ref) < 1e-10


def test_gru_layer_matches_torch_gru_cell():
    # Ground truth: torch.nn.GRUCell has the same equations (n = tanh(W_in x + b_in + r (W_hn h + b_hn)),
    # h' = (1 - z) n + z h) - copy the weights of member 1 and run it step by step.
    net = deep.DeepRecurrentStack("gru", "none", [1.0, 30.0], [0, 1], **SMALL)
    blk = net.blocks[0]
    with torch.no_grad():
        blk.b_hn.normal_(generator=torch.Generator().manual_seed(9))
    u = torch.randn(2, 3, 15, 8, generator=torch.Generator().manual_seed(3), dtype=F64)
    y, _ = blk.recurrence(u)
    m = 1
    cell = nn.GRUCell(8, 8).to(F64)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.cat([blk.W_ir[m], blk.W_iz[m], blk.W_in[m]]))
        cell.weight_hh.copy_(torch.cat([blk.W_hr[m], blk.W_hz[m], blk.W_hn[m]]))
        cell.bias_ih.copy_(torch.cat([blk.b_r[m], blk.b_z[m], blk.b_in[m]]))
        cell.bias_hh.copy_(torch.cat([torch.zeros(16, dtype=F64), blk.b_hn[m]]))
        h = torch.zeros(3, 8, dtype=F64)
        ref = []
        for t in range(15):
            h = cell(u[m, :, t], h)
            ref.append(h)
    assert rel(y[m], torch.stack(ref, dim=1)) < 1e-10


def test_norms_normalize_the_right_axes_and_never_mix_members():
    u = torch.randn(2, 4, 6, 5, generator=torch.Generator().manual_seed(4), dtype=F64) * 7 + 3
    ln = deep._Norm("layer", 2, 5, F64, "cpu")
    bn = deep._Norm("batch", 2, 5, F64, "cpu")
    a, b = ln(u), bn(u)
    assert float(a.mean(-1).abs().max()) < 1e-12 and float((a.var(-1, unbiased=False) - 1).abs().max()) < 1e-5
    assert float(b.mean((1, 2)).abs().max()) < 1e-12 and float((b.var((1, 2), unbiased=False) - 1).abs().max()) < 1e-5
    u2 = u.clone()
    u2[1] *= 100  # member 1 only
    assert torch.allclose(bn(u2)[0], b[0], atol=1e-14)


def test_norm_tames_the_activity_of_a_long_memory_complex_rnn():
    # The claim of Chapter 7 in miniature: without normalization the state of the last block of
    # a complex diagonal stack with T_char = 100 is orders of magnitude above T_char = 1; layer
    # norm keeps the last block within ~100x of the first and >10x below the unnormalized one.
    common = dict(batch=2, seq_len=300, input_seed=0, d_input=24, d_model=16, n_blocks=3, dtype=F64)
    none = deep.deep_signal_propagation("complex", "none", [1.0, 100.0], [0], **common)
    layer = deep.deep_signal_propagation("complex", "layer", [1.0, 100.0], [0], **common)
    assert float(none.activity[1, -1] / none.activity[0, -1]) > 1e3
    assert float(layer.activity[1, -1] / layer.activity[1, 0]) < 1e2
    assert float(layer.activity[1, -1]) < 1e-1 * float(none.activity[1, -1])


@pytest.mark.parametrize("norm", deep.NORMS)
def test_members_are_independent_and_grad_sq_is_the_mean_squared_gradient(norm):
    # Batched sweep vs one member alone (same seed and memory): identical statistics, so no
    # member sees another's batch statistics or gradients. grad_sq against a direct autograd.
    kw = dict(batch=2, seq_len=30, input_seed=1, d_input=12, d_model=8, n_blocks=2, dtype=F64)
    full = deep.deep_signal_propagation("lru", norm, [1.0, 10.0, 100.0], [0, 5], **kw)
    alone = deep.deep_signal_propagation("lru", norm, [10.0], [5], **kw)
    i = 3  # memory 10, seed 5 (memory-major)
    assert float(full.memory[i]) == 10.0 and int(full.seed[i]) == 5
    assert rel(full.activity[i], alone.activity[0]) < 1e-10
    for g, v in alone.grad_sq.items():
        assert rel(full.grad_sq[g][i:i + 1], v) < 1e-10, g
    net = deep.DeepRecurrentStack("lru", norm, [10.0], [5], d_input=12, d_model=8, n_blocks=2, dtype=F64)
    x = deep.fitted_autocorrelation_inputs(2, 30, 12, generator=torch.Generator().manual_seed(1), dtype=F64)
    out, _ = net(x)
    (g_ang,) = torch.autograd.grad(deep.next_input_loss(out, x).sum(), [net.blocks[1].theta_log])
    assert rel(alone.grad_sq["angle/2"], (g_ang**2).mean().reshape(1)) < 1e-12


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="layer"):
        deep.DeepRecurrentStack("lstm", "none", [1.0], [0])
    with pytest.raises(ValueError, match="norm"):
        deep.DeepRecurrentStack("gru", "group", [1.0], [0])
    with pytest.raises(ValueError, match="one seed per member"):
        deep.DeepRecurrentStack("gru", "none", [1.0, 2.0], [0])
    with pytest.raises(ValueError, match="x must have shape"):
        deep.DeepRecurrentStack("gru", "none", [1.0], [0], **SMALL)(torch.zeros(2, 5, 7, dtype=F64))


# ---------------------------------------------------------------- summaries of the measurements


def _fake_stats() -> dict:
    # 2 memories x 2 seeds (memory-major), 2 blocks; values chosen so every mean is known by hand
    from floss_utils.curse_of_memory.deep_stacks import DeepStats

    act = torch.tensor([[1.0, 2.0], [3.0, 6.0], [10.0, 40.0], [30.0, 80.0]])  # (M, blocks)
    grad = {"lambda/1": torch.tensor([1.0, 1.0, 100.0, 100.0]), "lambda/2": torch.tensor([3.0, 3.0, 300.0, 300.0]),
            "encoder": torch.tensor([2.0, 2.0, 2.0, 2.0])}
    st = DeepStats(memory=torch.tensor([1.0, 1.0, 10.0, 10.0]), seed=torch.tensor([0, 1, 0, 1]), activity=act,
                   grad_sq=grad, loss=torch.zeros(4))
    return {("complex", "none"): st}


def test_growth_with_memory_is_the_ratio_of_seed_means():
    from floss_utils.curse_of_memory.deep_stacks import growth_with_memory

    g = growth_with_memory(_fake_stats(), n_memories=2).set_index("quantity")
    # block 1: seed means 2 -> 20; block 2: 4 -> 60; lambda: block means 2 -> 200; encoder flat
    assert g.loc["activity, layer 1", "growth"] == pytest.approx(10.0)
    assert g.loc["activity, layer 2", "growth"] == pytest.approx(15.0)
    assert g.loc["grad lambda", "growth"] == pytest.approx(100.0)
    assert g.loc["grad encoder", "growth"] == pytest.approx(1.0)
    assert g.loc["grad lambda", "max/min"] == pytest.approx(100.0)


def test_stats_table_keeps_every_block_seed_and_group():
    from floss_utils.curse_of_memory.deep_stacks import stats_table

    t = stats_table(_fake_stats())
    assert len(t) == 4 * 2 + 4 * 3  # (members x blocks) activities + (members x groups) gradients
    row = t[(t.quantity == "grad_sq") & (t.group == "lambda") & (t.block == 2) & (t.memory == 10.0) & (t.seed == 1)]
    assert row.value.item() == 300.0
    assert set(t[t.group == "encoder"].block) == {0}


@pytest.mark.parametrize("layer", ["complex", "gru"])
def test_member_groups_change_the_numbers_at_most_in_the_last_bits(layer):
    # 3 memories x 2 seeds: one pass for all six members vs one member at a time (1-byte budget).
    # Members are independent networks; only a batched matrix product over another number of
    # members may round differently (seen: 1 ulp for the GRU's bmm), hence rtol 1e-13.
    from floss_utils.curse_of_memory.deep_stacks import deep_signal_propagation

    kw = dict(batch=2, seq_len=12, input_seed=5, d_input=6, d_model=4, n_blocks=2, dtype=torch.float64)
    whole = deep_signal_propagation(layer, "batch", [1.0, 3.0, 10.0], [0, 1], max_bytes=1 << 40, **kw)
    single = deep_signal_propagation(layer, "batch", [1.0, 3.0, 10.0], [0, 1], max_bytes=1, **kw)
    assert torch.allclose(whole.activity, single.activity, rtol=1e-13, atol=0)
    assert torch.allclose(whole.loss, single.loss, rtol=1e-13, atol=0)
    assert whole.grad_sq.keys() == single.grad_sq.keys()
    assert all(torch.allclose(whole.grad_sq[g], single.grad_sq[g], rtol=1e-13, atol=0) for g in whole.grad_sq)


def test_published_growth_table_matches_by_hand():
    # a hand-made summary: "grad other" expands to the groups not named for that network (B, D and F
    # here, not lambda); a NaN group (absent without norm) is skipped, an infinite one (overflow) is outside
    import pandas as pd

    s = pd.DataFrame([("complex", "none", "activity, layer 1", 70.0), ("complex", "none", "activity, layer 4", 9e4),
                      ("complex", "none", "grad lambda", 2e15), ("complex", "none", "grad B", 3e11),
                      ("complex", "none", "grad D", 6e8), ("complex", "none", "grad norm", float("nan")),
                      ("complex", "none", "grad F", float("inf"))],
                     columns=["layer", "norm", "quantity", "growth"])
    pub = {("complex", "none", "activity, last layer"): 1e5, ("complex", "none", "grad lambda"): 3e15,
           ("complex", "none", "grad other"): 1e12}
    t = deep.published_growth_table(s, pub, factor=10)
    assert t.quantity.tolist() == ["activity, layer 4", "grad lambda", "grad B", "grad D", "grad F"]
    assert t["within factor"].tolist() == [True, True, True, False, False]  # 6e8 / 1e12 is outside a decade
    assert t["book / published"].iloc[0] == pytest.approx(0.9)
    with pytest.raises(KeyError, match="no 'lru' network"):
        deep.published_growth_table(s, {("lru", "none", "grad angle"): 1e4})
    with pytest.raises(KeyError, match="'grad theta'"):
        deep.published_growth_table(s, {("complex", "none", "grad theta"): 1.0})
    with pytest.raises(ValueError, match="factor"):
        deep.published_growth_table(s, pub, factor=0.5)
    # the rows outside, as text: this run's growth against ZO's, the "grad " prefix dropped
    assert deep.outside_text(t) == "complex (no norm) D: 6e+08 against 1e+12; complex (no norm) F: inf against 1e+12"
    assert deep.outside_text(t[t["within factor"]]) == "none"
    t_ln = t.assign(norm="layer")
    assert deep.outside_text(t_ln).startswith("complex (layer norm) D: ")


def test_zo_fig5_published_maps_the_record_onto_the_book_quantities():
    res = {"fig5b_growth": {"complex": {"lambda": 7.0, "all_but_lambda": 6.0},
                            "lru": {"theta": 5.0, "nu": 4.0, "all_but_lambda": 3.0}},
           "fig5c_layer_norm": {"lambda": {"growth": 2.0}, "all_but_lambda": {"growth": 0.5}}}
    pub = deep.zo_fig5_published(res)
    assert pub[("complex", "none", "grad lambda")] == 7.0 and pub[("complex", "none", "grad other")] == 6.0
    assert pub[("lru", "none", "grad angle")] == 5.0 and pub[("lru", "none", "grad magnitude")] == 4.0
    assert pub[("lru", "none", "grad other")] == 3.0
    assert pub[("complex", "layer", "grad lambda")] == 2.0 and pub[("complex", "layer", "grad other")] == 0.5
    assert all(pub[k] == v for k, v in deep.ZO_FIG5_GROWTH.items())  # the panel readings are kept
    with pytest.raises(KeyError, match="lacks"):
        deep.zo_fig5_published({"fig5b_growth": {}})


def test_the_committed_fig5_record_agrees_with_the_panel_readings_it_replaces():
    # ZO's printed Fig. 5B values against the orders of magnitude the methods page reads off the panels
    # (complex lambda ~3e-6 -> ~1e10, other ~1e-6 -> ~1e6, LRU angle ~1e-6 -> ~1e-2, the rest flat): within a decade
    from floss_utils.book.records import read_record
    pub = deep.zo_fig5_published(read_record("zo_fig5_published").results)
    read_off = {("complex", "none", "grad lambda"): 1e10 / 3e-6, ("complex", "none", "grad other"): 1e12,
                ("lru", "none", "grad angle"): 1e4, ("lru", "none", "grad other"): 1.0}
    for key, value in read_off.items():
        assert 0.1 <= pub[key] / value <= 10, key


def test_last_step_loss_by_hand_and_equal_to_next_input_loss_for_two_steps():
    out = torch.randn(3, 4, 5, 2, generator=gen(1), dtype=F64)
    x = torch.randn(4, 5, 2, generator=gen(2), dtype=F64)
    by_hand = torch.tensor([sum(0.5 * float((out[m, b, 3, d] - x[b, 4, d]) ** 2) for b in range(4) for d in range(2)) / 8
                            for m in range(3)], dtype=F64)
    assert rel(deep.last_step_loss(out, x), by_hand) < 1e-14
    # with T = 2 both losses see only the prediction of x_1 from step 0
    assert rel(deep.last_step_loss(out[:, :, :2], x[:, :2]), deep.next_input_loss(out[:, :, :2], x[:, :2])) < 1e-15
    with pytest.raises(ValueError, match="at least 2 steps"):
        deep.last_step_loss(out[:, :, :1], x[:, :1])


@pytest.mark.parametrize("inputs, loss", [("structured", "next_input"), ("fitted", "last_step"),
                                         ("mean_only", "next_input"), ("correlated_only", "next_input")])
def test_input_and_loss_variants_are_the_stated_inputs_and_loss(inputs, loss):
    # the statistics of a variant equal a direct autograd of the named loss on the named inputs
    from floss_utils.curse_of_memory.inputs import structured_embedding_inputs

    kw = dict(batch=2, seq_len=20, input_seed=3, d_input=6, d_model=4, n_blocks=2, dtype=F64)
    st = deep.deep_signal_propagation("complex", "none", [10.0], [1], inputs=inputs, loss=loss, **kw)
    g = torch.Generator().manual_seed(3)
    kwargs = {"structured": {}, "mean_only": {"shared_fraction": 0.0}, "correlated_only": {"mean_square": 0.0}}
    x = (structured_embedding_inputs(2, 20, 6, generator=g, dtype=F64, **kwargs[inputs]).x if inputs in kwargs
         else deep.fitted_autocorrelation_inputs(2, 20, 6, generator=g, dtype=F64))
    net = deep.DeepRecurrentStack("complex", "none", [10.0], [1], d_input=6, d_model=4, n_blocks=2, dtype=F64)
    out, _ = net(x)
    value = deep.LOSSES[loss](out, x)
    assert rel(st.loss, value.detach()) < 1e-12
    blk = net.blocks[0]
    g_re, g_im = torch.autograd.grad(value.sum(), [blk.lam_re, blk.lam_im])
    mean_sq = (g_re.pow(2).sum() + g_im.pow(2).sum()) / (blk.lam_re[0].numel() + blk.lam_im[0].numel())
    assert rel(st.grad_sq["lambda/1"], mean_sq.reshape(1)) < 1e-12
    plain = deep.deep_signal_propagation("complex", "none", [10.0], [1], **kw)
    assert float((st.loss - plain.loss).abs()) > 0  # the variant changes the numbers
    with pytest.raises(ValueError, match="inputs"):
        deep.deep_signal_propagation("complex", "none", [10.0], [1], inputs="bert", **kw)
    with pytest.raises(ValueError, match="loss"):
        deep.deep_signal_propagation("complex", "none", [10.0], [1], loss="xent", **kw)


def test_fig5_directions_by_hand():
    import pandas as pd

    def table(c_act, c_lam, l_ang, l_act, gru_grads):
        rows = [("complex", "activity, layer 1", 2.0), ("complex", "activity, layer 2", c_act), ("complex", "grad lambda", c_lam),
                ("lru", "activity, layer 1", 1.0), ("lru", "activity, layer 2", l_act), ("lru", "grad angle", l_ang),
                ("gru", "activity, layer 2", 0.5), ("gru", "activity, layer 1", 1.0)]
        rows += [("gru", f"grad g{i}", v) for i, v in enumerate(gru_grads)]
        return pd.DataFrame([{"layer": a, "norm": "none", "quantity": q, "growth": v} for a, q, v in rows])

    ok = deep.fig5_directions(table(1e3, 1e5, 1e2, 2.0, [1.0, 9.0]))
    assert ok == {"complex: activity and lambda gradient grow": True, "complex: every other gradient grows": True,
                  "LRU: angle gradient grows, activity flat": True, "LRU: every other gradient flat": True,
                  "GRU: no gradient group grows": True}  # no other group: vacuously true
    bad = deep.fig5_directions(table(5.0, 1e5, 1e2, 11.0, [1.0, 10.0]))  # last activity, not the first, counts
    assert not bad["complex: activity and lambda gradient grow"] and not bad["LRU: angle gradient grows, activity flat"]
    assert not bad["GRU: no gradient group grows"]
    # add a complex B group that stays flat and an LRU magnitude that grows
    extra = pd.concat([table(1e3, 1e5, 1e2, 2.0, [1.0]),
                       pd.DataFrame([{"layer": "complex", "norm": "none", "quantity": "grad B", "growth": 3.0},
                                     {"layer": "lru", "norm": "none", "quantity": "grad magnitude", "growth": 13.0}])])
    d = deep.fig5_directions(extra)
    assert not d["complex: every other gradient grows"] and not d["LRU: every other gradient flat"]
    assert deep.fig5_directions(table(1e3, 1e5, 1e2, 2.0, [1.0]), norm="layer") == {}


def test_variant_growth_is_growth_with_memory_of_each_variant():
    import pandas as pd

    kw = dict(batch=2, seq_len=16, input_seed=3, d_input=6, d_model=4, n_blocks=2, dtype=F64)
    t = deep.variant_growth([("fitted", "next_input"), ("structured", "last_step")], [1.0, 10.0], [0], layers=["lru"], **kw)
    assert set(zip(t.inputs, t.loss)) == {("fitted", "next_input"), ("structured", "last_step")}
    direct = deep.growth_with_memory({("lru", "none"): deep.deep_signal_propagation(
        "lru", "none", [1.0, 10.0], [0], inputs="structured", loss="last_step", **kw)}, 2)
    mine = t[t.inputs == "structured"].drop(columns=["inputs", "loss"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, direct)
