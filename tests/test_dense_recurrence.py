"""The dense time-domain recurrence with its hand-written backward (floss_utils.curse_of_memory.dense_recurrence).

Ground truths: the outputs equal the causal convolution with the impulse response C A^k B (an
independent computation: FFT of the kernel); gradients equal finite differences (gradcheck) and
autograd through the plain per-step loop; second derivatives equal finite differences of the
gradient (gradgradcheck)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch.func import functional_call, grad

from floss_utils.curse_of_memory import dense_recurrence as ds
from floss_utils.curse_of_memory.students import DenseRNN

from conftest import F64, gen


def plain_outputs(S: DenseRNN, x: torch.Tensor) -> torch.Tensor:
    """Autograd through the plain loop (baddbmm per step, readout per step)."""
    u = S._inputs(x)
    return (torch.cat(S._run(u, readout=True)[1], dim=-1) + S.D[:, None, None] * u).unsqueeze(-1)


def scan_fn(A, B, C, D, u):
    return ds.dense_scan(ds.augmented_matrix(A, B, C), u) + D[:, None, None] * u


def leaf_params(S: DenseRNN):
    return [t.detach().clone().requires_grad_() for t in (S.recurrence_matrix(), S.B, S.C, S.D)]


@pytest.mark.parametrize("shared", [True, False])
def test_outputs_equal_convolution_with_impulse_response(shared):
    S = DenseRNN([0, 1, 2], 6, heads=[1, 2, 3])
    x = torch.randn(4, 50, 1, generator=gen(1), dtype=F64)
    if not shared:
        x = torch.randn(3, 4, 50, 1, generator=gen(2), dtype=F64)
    y = S(x)
    assert y.shape == (3, 4, 50, 1)
    torch.testing.assert_close(y, S(x, method="kernel"), rtol=0, atol=1e-12)
    torch.testing.assert_close(y, plain_outputs(S, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("members_x", [1, 3])
def test_gradients_match_finite_differences(members_x):
    A, B, C, D = leaf_params(DenseRNN([3, 4, 5], 4, r_max=0.95))
    u = torch.randn(members_x, 2, 9, generator=gen(3), dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(scan_fn, (A, B, C, D, u))


def test_second_derivatives_match_finite_differences():
    # create_graph=True runs a differentiable backward (reference_scan), so Hessian-vector
    # products through the fast path are correct
    A, B, C, D = leaf_params(DenseRNN([6, 7], 3, r_max=0.9))
    u = torch.randn(1, 2, 6, generator=gen(4), dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(scan_fn, (A, B, C, D, u))


def test_training_gradients_equal_autograd_through_plain_loop():
    S = DenseRNN(list(range(5)), 8, heads=[1, 1, 2, 4, 8])
    x = torch.randn(3, 120, 1, generator=gen(5), dtype=F64)
    target = torch.randn(3, 120, 1, generator=gen(6), dtype=F64)
    g_fast = torch.autograd.grad(((S(x) - target) ** 2).mean(dim=(1, 2, 3)).sum(), list(S.parameters()))
    g_ref = torch.autograd.grad(((plain_outputs(S, x) - target) ** 2).mean(dim=(1, 2, 3)).sum(),
                                list(S.parameters()))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_float32_path_agrees_with_float64():
    S64 = DenseRNN(list(range(4)), 16, r_max=0.95)
    S32 = copy.deepcopy(S64).float()
    x = torch.randn(8, 200, 1, generator=gen(7), dtype=F64)
    l64 = (S64(x) ** 2).mean()
    l32 = (S32(x.float()) ** 2).mean()
    g64 = torch.autograd.grad(l64, list(S64.parameters()))
    g32 = torch.autograd.grad(l32, list(S32.parameters()))
    assert abs(l32.item() - l64.item()) < 1e-5 * l64.item()
    for a, b in zip(g32, g64):
        assert (a.double() - b).norm() < 1e-4 * b.norm()


def test_workspace_is_reused_and_never_aliased():
    S = DenseRNN([0, 1], 5)
    x1 = torch.randn(2, 40, 1, generator=gen(8), dtype=F64)
    x2 = torch.randn(2, 40, 1, generator=gen(9), dtype=F64)
    ref1 = torch.autograd.grad(plain_outputs(S, x1).pow(2).sum(), list(S.parameters()))
    ref2 = torch.autograd.grad(plain_outputs(S, x2).pow(2).sum(), list(S.parameters()))
    # two graphs alive at once: the second forward must not write into the first one's states
    l1, l2 = S(x1).pow(2).sum(), S(x2).pow(2).sum()
    g2 = torch.autograd.grad(l2, list(S.parameters()))
    g1 = torch.autograd.grad(l1, list(S.parameters()), retain_graph=True)
    for a, b in zip(g1 + g2, ref1 + ref2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # the buffer went back after the backward; a new forward takes it again...
    buf = S._scan_workspace().buffer
    assert buf is not None
    l3 = S(x2).pow(2).sum()
    assert S._scan_workspace().buffer is None
    # ...so a second backward of l1's retained graph recomputes its states instead of reading x2's
    g1_again = torch.autograd.grad(l1, list(S.parameters()))
    for a, b in zip(g1_again, ref1):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    torch.autograd.grad(l3, list(S.parameters()))
    assert S._scan_workspace().buffer.data_ptr() == buf.data_ptr()


def test_no_grad_forward_keeps_no_states():
    S = DenseRNN([0, 1], 5)
    x = torch.randn(2, 40, 1, generator=gen(10), dtype=F64)
    with torch.no_grad():
        y = S(x)
    assert S._scan_workspace().buffer is None  # nothing taken, nothing stored
    torch.testing.assert_close(y, S(x, method="kernel"), rtol=0, atol=1e-12)


def test_copies_do_not_carry_the_buffer():
    S = DenseRNN([0, 1], 5)
    S(torch.randn(2, 10, 1, dtype=F64)).sum().backward()
    assert S._scan_workspace().buffer is not None
    assert copy.deepcopy(S)._scan_workspace().buffer is None
    assert pickle.loads(pickle.dumps(S))._scan_workspace().buffer is None
    assert S.member(1)._scan_workspace().buffer is None


def test_func_transforms_and_forward_ad_fall_back_to_plain_loop():
    S = DenseRNN([0, 1], 4)
    x = torch.randn(2, 30, 1, generator=gen(11), dtype=F64)
    params = {k: v.detach() for k, v in S.named_parameters()}

    def loss(p):
        assert not ds.fast_path_applies(p["A"])
        return functional_call(S, (p,), (x,)).pow(2).sum()

    g_func = grad(loss)(params)
    g_ref = torch.autograd.grad(S(x).pow(2).sum(), list(S.parameters()))
    for (name, _), b in zip(S.named_parameters(), g_ref):
        torch.testing.assert_close(g_func[name], b, rtol=1e-12, atol=1e-14)

    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        tangent = torch.randn(2, 30, 1, generator=gen(12), dtype=F64)
        out = S(fwAD.make_dual(x, tangent))
        jvp = fwAD.unpack_dual(out).tangent
    with torch.no_grad():
        eps = 1e-6
        fd = (S(x + eps * tangent) - S(x - eps * tangent)) / (2 * eps)
    torch.testing.assert_close(jvp, fd, rtol=1e-6, atol=1e-8)


def test_bad_inputs_are_refused():
    W = torch.zeros(2, 4, 4, dtype=F64)
    with pytest.raises(ValueError, match="W must have shape"):
        ds.dense_scan(torch.zeros(2, 4, 3, dtype=F64), torch.zeros(1, 2, 3, dtype=F64))
    with pytest.raises(ValueError, match="u must have shape"):
        ds.dense_scan(W, torch.zeros(3, 2, 5, dtype=F64))
    with pytest.raises(ValueError, match="must match W"):
        ds.dense_scan(W, torch.zeros(1, 2, 5, dtype=torch.float32))
    assert ds.dense_scan(W, torch.zeros(1, 2, 0, dtype=F64)).shape == (2, 2, 0)


def test_create_graph_backward_gives_the_buffer_back_and_matches_plain_loop():
    # Hessian-vector product through the fast path (double backward) equals the one through
    # autograd of the plain loop; the states buffer returns to the workspace all the same.
    S = DenseRNN([0, 1], 4, r_max=0.9)
    x = torch.randn(2, 25, 1, generator=gen(13), dtype=F64)
    v = [torch.randn(p.shape, generator=gen(14 + i), dtype=F64) for i, p in enumerate(S.parameters())]

    def hvp(outputs):
        g = torch.autograd.grad(outputs(x).pow(2).sum(), list(S.parameters()), create_graph=True)
        return torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), list(S.parameters()))

    fast, ref = hvp(S), hvp(lambda xx: plain_outputs(S, xx))
    assert S._scan_workspace().buffer is not None
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
