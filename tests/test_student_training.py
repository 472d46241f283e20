"""Ensemble training: exact batch loss, Adam, batching, divergence handling, gradients.

Float64 throughout. Tolerances: round-off comparisons of the same quantity computed two ways use
relative 1e-10 (the losses are sums of ~1e4 squared errors); runs compared step by step after
Adam (which divides by sqrt(v)) use 1e-8.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from floss_utils.optim import adam_update
from floss_utils.curse_of_memory.students import LRU, ComplexDiagonalRNN, DenseRNN
from floss_utils.curse_of_memory.teacher import make_teacher
from floss_utils.curse_of_memory.student_training import (best_learning_rates, cosine_lr,
                                                          expected_loss, fft_loss, kernel_error,
                                                          lagged_gram, quadratic_loss,
                                                          train_ensemble)

from conftest import F64, gen


def test_lagged_gram_matches_brute_force():
    # G_kl = sum_b sum_{t >= max(k,l)} x_{b,t-k} x_{b,t-l}, built from explicit lagged copies.
    x = torch.randn(2, 3, 17, generator=gen(0), dtype=F64)
    T = 17
    lagged = torch.zeros(2, 3, T, T, dtype=F64)  # [s, b, t, k] = x_{b, t-k}
    for t in range(T):
        for k in range(t + 1):
            lagged[:, :, t, k] = x[:, :, t - k]
    brute = torch.einsum("sbtk,sbtl->skl", lagged, lagged)
    assert torch.allclose(lagged_gram(x), brute, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: DenseRNN([0, 1], 6, heads=[1, 3]),
    lambda: LRU([2, 3], 6, r_min=0.9),
    lambda: ComplexDiagonalRNN([4, 5], 6, gamma=True),
])
def test_quadratic_loss_equals_time_domain_mse_with_gradients(make):
    # Ground truth: run the student's recurrence and the teacher's recurrence on the batch and
    # average 1/2 (y - y*)^2. The quadratic form in the kernel error must give the same loss and
    # the same gradient for every parameter (relative 1e-10).
    S = make()
    t = make_teacher(0, 0.95)
    x = torch.randn(4, 80, 1, generator=gen(6), dtype=F64)
    direct = 0.5 * ((S(x) - t.outputs(x)) ** 2).mean(dim=(1, 2, 3))
    g_direct = torch.autograd.grad(direct.sum(), list(S.parameters()))
    g = kernel_error(S, t.kernel(80)[None], t.D[None], torch.zeros(2, dtype=torch.long), 80)
    quad = quadratic_loss(g, lagged_gram(x[..., 0])[None], torch.zeros(2, dtype=torch.long), 4 * 80)
    g_quad = torch.autograd.grad(quad.sum(), list(S.parameters()))
    assert torch.allclose(quad, direct, rtol=1e-10)
    for a, b in zip(g_quad, g_direct):
        assert float((a - b).abs().max()) <= 1e-10 * float(b.abs().max()) + 1e-14
    fl = fft_loss(g, x[..., 0][None], torch.zeros(2, dtype=torch.long))
    assert torch.allclose(fl, direct, rtol=1e-10)


def test_expected_loss_is_mean_of_batch_losses():
    # E over white unit-variance inputs of the batch loss is 1/(2T) sum_k (T-k) g_k^2.
    # Monte Carlo over 400 batches of 32: relative standard error of the mean ~ 1/sqrt(400*32*T/10)
    # ~ 1e-3; tolerance 2 %.
    g = torch.randn(3, 30, generator=gen(7), dtype=F64) * torch.exp(-torch.arange(30) / 8.0)
    x = torch.randn(400, 32, 30, generator=gen(8), dtype=F64)
    G = lagged_gram(x)
    mc = torch.stack([quadratic_loss(g, G[i:i + 1], torch.zeros(3, dtype=torch.long), 32 * 30) for i in range(400)]).mean(0)
    assert torch.allclose(mc, expected_loss(g), rtol=0.02)


def test_adam_update_matches_torch_adam():
    # Reference: torch.optim.Adam (same conventions: eps outside the square root), one member
    # per learning rate; 20 steps with the same gradients.
    p = torch.randn(3, 4, generator=gen(9), dtype=F64)
    lrs = torch.tensor([1e-3, 1e-2, 0.1], dtype=F64)
    refs = [torch.nn.Parameter(p[i].clone()) for i in range(3)]
    opts = [torch.optim.Adam([refs[i]], lr=float(lrs[i])) for i in range(3)]
    ours, m, v = p.clone(), torch.zeros_like(p), torch.zeros_like(p)
    for step in range(1, 21):
        grad = torch.randn(3, 4, generator=gen(100 + step), dtype=F64)
        adam_update([ours], [grad], [m], [v], lr=lrs, steps=torch.full((3,), step), mask=torch.ones(3, dtype=torch.bool))
        for i in range(3):
            refs[i].grad = grad[i].clone()
            opts[i].step()
    assert torch.allclose(ours, torch.stack([r.detach() for r in refs]), rtol=1e-12, atol=1e-15)


def test_cosine_schedule_endpoints():
    peak = torch.tensor([0.1, 1e-3], dtype=F64)
    assert torch.allclose(cosine_lr(peak, 0, 100), peak)
    assert torch.allclose(cosine_lr(peak, 100, 100), torch.full_like(peak, 1e-7))
    assert torch.allclose(cosine_lr(peak, 50, 100), (peak + 1e-7) / 2)


@pytest.mark.parametrize("make", [
    lambda seeds: LRU(seeds, 8, r_min=0.9),
    lambda seeds: DenseRNN(seeds, 8, heads=2),
])
@pytest.mark.parametrize("loss_method", ["gram", "fft"])
def test_batched_ensemble_equals_separate_runs(make, loss_method):
    # 4 members (2 seeds x 2 learning rates, 2 data streams) trained together against each
    # member trained alone with the same seeds: same numbers up to round-off (relative 1e-8).
    seeds, lrs, data = [0, 1, 0, 1], [0.01, 0.01, 0.003, 0.003], [10, 11, 10, 11]
    kw = dict(steps=30, batch_size=8, seq_len=40, final_window=5, loss_method=loss_method)
    t = make_teacher(1, 0.9)
    together = train_ensemble(make(seeds), t, lr=lrs, data_seeds=data, **kw)
    for i in range(4):
        alone = train_ensemble(make([seeds[i]]), t, lr=[lrs[i]], data_seeds=[data[i]], **kw)
        assert torch.allclose(together.losses[i], alone.losses[0], rtol=1e-8)
        for (name, p), q in zip(together.model.named_parameters(), alone.model.parameters()):
            assert torch.allclose(p[i], q[0], rtol=1e-8, atol=1e-12), name


def test_diverging_member_is_marked_and_others_unaffected():
    # Member 1 gets an absurd learning rate (1e3): it must be marked diverged at some step, its
    # loss curve kept up to that step, its parameters finite; the other members' results must
    # equal a run without it (to round-off).
    t = make_teacher(2, 0.8)
    kw = dict(steps=40, batch_size=8, seq_len=30, final_window=5, data_seeds=[3, 3, 3])
    res = train_ensemble(DenseRNN([0, 1, 2], 6), t, lr=[1e-3, 1e3, 3e-3], **kw)
    assert res.diverged.tolist() == [False, True, False]
    s = int(res.diverged_step[1])
    assert 0 < s < 40
    assert torch.isfinite(res.losses[1, :s]).all() and torch.isnan(res.losses[1, s + 1:]).all()
    assert math.isinf(res.final_loss[1])
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    ref = train_ensemble(DenseRNN([0, 2], 6), t, lr=[1e-3, 3e-3], **{**kw, "data_seeds": [3, 3]})
    assert torch.allclose(res.losses[[0, 2]], ref.losses, rtol=1e-10)
    assert torch.allclose(res.final_loss[[0, 2]], ref.final_loss, rtol=1e-10)


def test_training_reduces_loss_and_respects_block_mask():
    t = make_teacher(0, 0.5)
    S = DenseRNN([0, 1], 8, heads=4)
    res = train_ensemble(S, t, lr=1e-2, steps=300, data_seeds=[0, 1], batch_size=16, seq_len=50, final_window=20)
    assert bool((res.final_loss < 0.3 * res.losses[:, :10].mean(-1)).all())
    assert torch.count_nonzero(S.A.detach() * (1 - S.mask)) == 0


@pytest.mark.parametrize("make", [
    lambda: LRU([0], 2, r_min=0.8),
    lambda: LRU([1], 2, magnitude="opt", angle="raw", r_min=0.8),  # "opt" angle: detached factor
    lambda: ComplexDiagonalRNN([2], 2, gamma=True, r_min=0.8),
    lambda: DenseRNN([3], 2),
])
def test_gradients_match_finite_differences(make):
    # Central differences with h = 1e-6 on the exact batch loss: truncation O(h^2) ~ 1e-12 and
    # round-off O(eps/h) ~ 1e-10 relative to the loss: tolerance 1e-6 relative to the largest
    # gradient entry.
    S = make()
    t = make_teacher(4, 0.7)
    x = torch.randn(1, 3, 25, generator=gen(11), dtype=F64)
    G, st = lagged_gram(x), torch.zeros(1, dtype=torch.long)

    def loss() -> torch.Tensor:
        g = kernel_error(S, t.kernel(25)[None], t.D[None], st, 25)
        return quadratic_loss(g, G, st, 75).sum()

    params = list(S.parameters())
    grads = torch.autograd.grad(loss(), params)
    h = 1e-6
    for p, gr in zip(params, grads):
        fd = torch.zeros_like(p)
        with torch.no_grad():
            for idx in np.ndindex(*p.shape):
                old = p[idx].item()
                p[idx] = old + h; up = loss().item()
                p[idx] = old - h; down = loss().item()
                p[idx] = old
                fd[idx] = (up - down) / (2 * h)
        scale = max(float(gr.abs().max()), 1e-3)
        assert float((fd - gr).abs().max()) < 1e-6 * scale


def test_best_learning_rates_table():
    rows = []
    for arch, lr, seed, val in [
        ("a", 0.1, 0, 1.0), ("a", 0.1, 1, 3.0), ("a", 0.01, 0, 0.5), ("a", 0.01, 1, 0.7),
        ("b", 0.1, 0, 0.01), ("b", 0.1, 1, float("inf")), ("b", 0.01, 0, 0.2), ("b", 0.01, 1, 0.4),
    ]:
        rows.append({"arch": arch, "lr": lr, "seed": seed, "final_loss": val})
    best = best_learning_rates(pd.DataFrame(rows), ["arch"]).set_index("arch")
    assert best.loc["a", "lr"] == 0.01 and math.isclose(best.loc["a", "mean"], 0.6)
    assert math.isclose(best.loc["a", "sem"], np.std([0.5, 0.7], ddof=1) / math.sqrt(2))
    assert best.loc["b", "lr"] == 0.01  # lr 0.1 had a diverged seed
    with pytest.raises(ValueError, match="columns"):
        best_learning_rates(pd.DataFrame(rows), ["missing"])
    with pytest.raises(ValueError, match="diverged"):
        best_learning_rates(pd.DataFrame(rows), ["arch"], diverged="nan")


def _zo_figure_code(frame: pd.DataFrame) -> pd.DataFrame:
    """ZO's figure notebooks, literally (e.g. ``figures/effect_shrink_eigvals.ipynb``): inf -> NaN,
    mean and s.e.m. over seeds with pandas (NaN skipped), the rows whose mean is the smallest."""
    og = frame.replace([np.inf, -np.inf], np.nan)
    comp = og.groupby(["arch", "lr"])[["final_loss"]].mean().reset_index()
    comp["std"] = og.groupby(["arch", "lr"])[["final_loss"]].sem().reset_index()["final_loss"]
    return comp[comp.groupby(["arch"])["final_loss"].transform("min") == comp["final_loss"]].set_index("arch")


def test_best_learning_rates_with_diverged_seeds_dropped_is_zo_figure_code():
    # configuration "b": lr 0.1 has one diverged seed and survivors far below lr 0.01's seeds; "c":
    # every seed of lr 0.1 diverged (not eligible under either rule); three seeds, so the s.e.m.
    # of the survivors is defined
    rng = np.random.default_rng(0)
    rows = []
    for arch, lr, vals in [("a", 0.1, [1.0, 3.0, 2.0]), ("a", 0.01, [0.5, 0.7, 0.6]),
                           ("b", 0.1, [0.01, float("inf"), 0.03]), ("b", 0.01, [0.2, 0.4, 0.3]),
                           ("c", 0.1, [float("inf")] * 3), ("c", 0.01, list(rng.uniform(1, 2, 3)))]:
        rows += [{"arch": arch, "lr": lr, "seed": i, "final_loss": v} for i, v in enumerate(vals)]
    frame = pd.DataFrame(rows)
    ours = best_learning_rates(frame, ["arch"], diverged="dropped").set_index("arch")
    zo = _zo_figure_code(frame)
    for arch in "abc":
        assert ours.loc[arch, "lr"] == zo.loc[arch, "lr"]
        assert math.isclose(ours.loc[arch, "mean"], zo.loc[arch, "final_loss"], rel_tol=1e-12)
        assert math.isclose(ours.loc[arch, "sem"], zo.loc[arch, "std"], rel_tol=1e-12)
    assert ours.loc["b", "lr"] == 0.1 and ours.loc["b", "n_diverged"] == 1 and ours.loc["b", "n_seeds"] == 3
    # the book's rule keeps lr 0.1 of "b" out; both rules agree where no seed diverged
    book = best_learning_rates(frame, ["arch"]).set_index("arch")
    assert book.loc["b", "lr"] == 0.01 and math.isclose(book.loc["b", "mean"], 0.3)
    assert book.loc["a", "mean"] == ours.loc["a", "mean"] and book.loc["c", "mean"] == ours.loc["c", "mean"]


def test_bad_training_arguments():
    t = make_teacher(0, 0.5)
    S = LRU([0, 1], 4)
    ok = dict(lr=0.01, steps=5, data_seeds=[0, 1], batch_size=2, seq_len=10, final_window=2)
    with pytest.raises(ValueError, match="learning rate"):
        train_ensemble(S, t, **{**ok, "lr": [0.01, -1.0]})
    with pytest.raises(ValueError, match="lr must have one value per member"):
        train_ensemble(S, t, **{**ok, "lr": [0.1, 0.1, 0.1]})
    with pytest.raises(ValueError, match="steps"):
        train_ensemble(S, t, **{**ok, "steps": 0})
    with pytest.raises(ValueError, match="data_seeds"):
        train_ensemble(S, t, **{**ok, "data_seeds": [0]})
    with pytest.raises(ValueError, match="teacher_index"):
        train_ensemble(S, t, teacher_index=[0, 1], **ok)
    with pytest.raises(ValueError, match="final_window"):
        train_ensemble(S, t, **{**ok, "final_window": 6})
    with pytest.raises(TypeError, match="Student"):
        train_ensemble(torch.nn.Linear(1, 1), t, **ok)
    with pytest.raises(ValueError, match="loss_method"):
        train_ensemble(S, t, loss_method="exact", **ok)
