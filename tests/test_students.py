"""The linear students against independent ground truths.

Float64 throughout. Round-off tolerances are ~1e3-1e4 ulps of the quantities compared (sums of
up to a few hundred terms of size O(1-10)); Monte Carlo tolerances are stated where used.
"""

from __future__ import annotations

import math

import pytest
import torch

from floss_utils.curse_of_memory.students import (LRU, S4D, ComplexDiagonalRNN, DenseRNN,
                                                  causal_convolution, lambda_from_params,
                                                  params_from_lambda, ring_init,
                                                  shaped_recurrent_matrix)
from floss_utils.curse_of_memory.scans import diagonal_recurrence, diagonal_scan

from conftest import F64, gen


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


# ------------------------------------------------------------------------------ the scan


@pytest.mark.parametrize("chunk", [None, 1, 2, 7, 16, 64, 500])
@pytest.mark.parametrize("kind", ["complex", "real"])
def test_scan_equals_sequential_recursion(chunk, kind):
    # Ground truth: the loop h_t = lam h_{t-1} + b_t. Moduli up to 0.999 (long memory, states
    # ~ 30x the drive) and a few slightly above 1 (growing). Same arithmetic up to summation
    # order: relative tolerance 1e-12.
    g = gen(0)
    T, n = 301, 6
    mod = torch.cat([torch.rand(3, 1, n - 1, generator=g, dtype=F64) * 0.999, torch.full((3, 1, 1), 1.002, dtype=F64)], -1)
    if kind == "complex":
        lam = torch.polar(mod, torch.rand(3, 1, n, generator=g, dtype=F64) * math.pi)
        b = torch.complex(torch.randn(3, 4, T, n, generator=g, dtype=F64), torch.randn(3, 4, T, n, generator=g, dtype=F64))
    else:
        lam = mod * torch.sign(torch.randn(3, 1, n, generator=g, dtype=F64))
        b = torch.randn(3, 4, T, n, generator=g, dtype=F64)
    h0 = torch.randn(3, 4, n, generator=g, dtype=F64).to(b.dtype)
    assert rel_err(diagonal_scan(lam, b, chunk=chunk), diagonal_recurrence(lam, b)) < 1e-12
    assert rel_err(diagonal_scan(lam, b, h0=h0, chunk=chunk), diagonal_recurrence(lam, b, h0=h0)) < 1e-12


def test_scan_gradients_equal_loop_gradients():
    # Autograd through both algorithms for the same scalar loss: the gradients are the same
    # numbers up to summation order (relative 1e-11).
    g = gen(1)
    lam0 = torch.polar(torch.rand(2, 1, 4, generator=g, dtype=F64) * 0.99, torch.rand(2, 1, 4, generator=g, dtype=F64))
    b0 = torch.complex(torch.randn(2, 3, 50, 4, generator=g, dtype=F64), torch.randn(2, 3, 50, 4, generator=g, dtype=F64))
    grads = []
    for fn in (diagonal_scan, diagonal_recurrence):
        lam = lam0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        (fn(lam, b).abs() ** 2).sum().backward()
        grads.append((lam.grad, b.grad))
    assert rel_err(grads[0][0], grads[1][0]) < 1e-11
    assert rel_err(grads[0][1], grads[1][1]) < 1e-11


def test_causal_convolution_matches_direct_sum():
    g = gen(2)
    x = torch.randn(3, 40, generator=g, dtype=F64)
    k = torch.randn(40, generator=g, dtype=F64)
    direct = torch.stack([sum(k[j] * x[:, t - j] for j in range(t + 1)) for t in range(40)], -1)
    assert rel_err(causal_convolution(x, k), direct) < 1e-12


# ------------------------------------------------------------------------------ students


def _dense_by_hand(A, B, C, D, x):
    """Single network, loop with matrix-vector products: the textbook recursion."""
    h = torch.zeros(A.shape[0], dtype=F64)
    out = []
    for t in range(x.shape[1]):
        h = A @ h
        h = h[:, None] + B[:, None] * x[:, t][None, :] if h.ndim == 1 else h + B[:, None] * x[:, t][None, :]
        out.append(C @ h + D * x[:, t])
    return torch.stack(out, 1)


def test_dense_rnn_equals_textbook_recursion():
    # Independent reference: an explicit per-network loop with (n x n)(n x B) products.
    S = DenseRNN([3, 4], 6)
    x = torch.randn(5, 40, 1, generator=gen(3), dtype=F64)
    y = S(x)
    for m in range(2):
        A = S.recurrence_matrix()[m].detach()
        h = torch.zeros(6, 5, dtype=F64)
        ref = []
        for t in range(40):
            h = A @ h + S.B[m].detach()[:, None] * x[:, t, 0][None, :]
            ref.append(S.C[m].detach() @ h + S.D[m].detach() * x[:, t, 0])
        assert rel_err(y[m, :, :, 0].detach(), torch.stack(ref, 1)) < 1e-12


@pytest.mark.parametrize("make", [
    lambda: DenseRNN([0, 1, 2], 8, heads=[1, 2, 4]),
    lambda: ComplexDiagonalRNN([0, 1], 8, gamma=True, r_min=0.9),
    lambda: LRU([0, 1], 8, r_min=0.99),
    lambda: LRU([5], 8, magnitude="opt", angle="opt", r_min=0.5),
    lambda: LRU([6], 8, magnitude="polar", angle="raw", gamma=False),
])
def test_kernel_convolution_equals_time_domain(make):
    # Two independent computations of the same outputs: the recurrence in time (loop / scan)
    # and the FFT convolution with the impulse response C A^k B (doubling / Vandermonde).
    S = make()
    x = torch.randn(4, 200, 1, generator=gen(4), dtype=F64)
    assert rel_err(S(x, method="kernel"), S(x)) < 1e-11


def test_complex_diagonal_equals_dense_in_eigenbasis():
    # A = U diag(l) U^{-1}: the diagonal RNN with lambda = l, B' = U^{-1} B, C' = C U computes
    # exactly the dense RNN's outputs (Re of a real number). Tolerance: relative 1e-10 (the
    # eigenbasis of a random 6x6 matrix has condition number ~10-100).
    dense = DenseRNN([7], 6)
    A, B, C = dense.recurrence_matrix()[0].detach(), dense.B[0].detach(), dense.C[0].detach()
    lam, U = torch.linalg.eig(A)
    Bp = torch.linalg.solve(U, B.to(U.dtype))
    Cp = C.to(U.dtype) @ U
    diag = ComplexDiagonalRNN([0], 6)
    with torch.no_grad():
        diag.lam_re.copy_(lam.real[None]); diag.lam_im.copy_(lam.imag[None])
        diag.B_re.copy_(Bp.real[None]); diag.B_im.copy_(Bp.imag[None])
        diag.C_re.copy_(Cp.real[None]); diag.C_im.copy_(Cp.imag[None])
        diag.D.copy_(dense.D)
    x = torch.randn(3, 120, 1, generator=gen(8), dtype=F64)
    assert rel_err(diag(x), dense(x)) < 1e-10
    # and the dense student's eigenvalues are what its initialization promised: moduli
    # tanh|l0| of the raw Gaussian matrix's eigenvalues (r_min = 0, r_max = 1)
    g = gen(7)
    A0 = torch.randn(6, 6, generator=g, dtype=F64) / math.sqrt(6)
    want = torch.tanh(torch.linalg.eigvals(A0).abs()).sort().values
    assert torch.allclose(dense.eigenvalues()[0].abs().sort().values, want, atol=1e-12)


def test_block_diagonal_heads_equal_separate_small_rnns():
    # H heads = H independent (n/H)-unit RNNs sharing the input, outputs summed, plus D x.
    S = DenseRNN([11], 8, heads=4)
    A = S.recurrence_matrix()[0].detach()
    assert torch.count_nonzero(A * (1 - S.mask[0])) == 0
    x = torch.randn(3, 60, 1, generator=gen(9), dtype=F64)
    total = S.D[0].detach() * x[..., 0]
    for h in range(4):
        sl = slice(2 * h, 2 * h + 2)
        head = DenseRNN([0], 2)
        with torch.no_grad():
            head.A.copy_(A[sl, sl][None]); head.B.copy_(S.B[:, sl]); head.C.copy_(S.C[:, sl]); head.D.zero_()
        total = total + head(x)[0, ..., 0].detach()
    assert rel_err(S(x)[0, ..., 0].detach(), total) < 1e-12


def test_one_head_is_the_dense_rnn():
    a, b = DenseRNN([3], 8, heads=1), DenseRNN([3], 8)
    assert torch.equal(a.A, b.A) and torch.equal(a.mask, torch.ones_like(a.mask))


# ------------------------------------------------------------------- parametrizations


@pytest.mark.parametrize("magnitude", ["polar", "exp", "opt"])
@pytest.mark.parametrize("angle", ["raw", "exp", "opt"])
def test_lru_parametrizations_give_intended_lambda_and_gamma(magnitude, angle):
    S = LRU([0, 1], 16, magnitude=magnitude, angle=angle, r_min=0.4)
    mag, ang = S.lam_mag.detach(), S.lam_ang.detach()
    nu = {"polar": mag, "exp": torch.exp(-torch.exp(mag)), "opt": torch.tanh(mag)}[magnitude]
    theta = {"raw": ang, "exp": torch.exp(ang),
             "opt": (1 - nu**2) / (nu * torch.sqrt(1 + nu**2)) * ang}[angle]
    lam = S.lam().detach()
    assert torch.allclose(lam.abs(), nu, atol=1e-13)
    assert torch.allclose(lam, nu * torch.exp(1j * theta), atol=1e-13)
    # gamma_log = log sqrt(1 - |lambda|^2) at initialization
    assert torch.allclose(S.gamma().detach(), torch.sqrt(1 - lam.abs() ** 2), rtol=1e-12)
    # the parametrizations are inverted by params_from_lambda
    m2, a2 = params_from_lambda(nu, theta, magnitude, angle)
    assert torch.allclose(m2, mag, rtol=1e-10) and torch.allclose(a2, ang, rtol=1e-10)


def test_opt_angle_factor_is_held_constant():
    # theta = s(nu) omega with s detached: d theta / d omega = s(nu), d theta / d mag = 0.
    mag = torch.tensor([0.3], dtype=F64, requires_grad=True)
    ang = torch.tensor([2.0], dtype=F64, requires_grad=True)
    lam = lambda_from_params(mag, ang, "exp", "opt")
    torch.angle(lam).sum().backward()
    nu = math.exp(-math.exp(0.3))
    assert math.isclose(ang.grad.item(), (1 - nu**2) / (nu * math.sqrt(1 + nu**2)), rel_tol=1e-12)
    assert abs(mag.grad.item()) < 1e-15


def test_exp_parametrization_matches_lru_formula():
    S = LRU([4], 8)
    want = torch.exp(-torch.exp(S.lam_mag) + 1j * torch.exp(S.lam_ang)).detach()
    assert torch.allclose(S.lam().detach(), want, atol=1e-14)


def test_ring_initialization_ranges_and_distribution():
    # |lambda| in [r_min, r_max), angle in [0, max_phase); |lambda|^2 is uniform on
    # [r_min^2, r_max^2] so its mean is (r_min^2 + r_max^2)/2: 20 000 draws, standard error
    # (r_max^2 - r_min^2)/sqrt(12 * 20000) ~ 1e-3; tolerance 5 standard errors.
    nu, theta = ring_init(20_000, 0.6, 0.95, 0.5, gen(12))
    assert float(nu.min()) >= 0.6 and float(nu.max()) < 0.95
    assert float(theta.min()) >= 0.0 and float(theta.max()) < 0.5
    se = (0.95**2 - 0.6**2) / math.sqrt(12 * 20_000)
    assert abs(float((nu**2).mean()) - (0.6**2 + 0.95**2) / 2) < 5 * se
    S = LRU(list(range(4)), 64, r_min=[0.36, 0.9, 0.99, 0.5], max_phase=[math.pi, 0.3, 0.1, 1.0])
    mods = S.lam().detach().abs()
    for m, r in enumerate([0.36, 0.9, 0.99, 0.5]):
        assert float(mods[m].min()) >= r - 1e-12 and float(mods[m].max()) < 1.0
    angles = torch.angle(S.lam().detach()) % (2 * math.pi)
    assert float(angles[1].max()) < 0.3 and float(angles[2].max()) < 0.1


def test_shaped_matrix_moduli():
    # eigenvalue moduli r_min + (r_max - r_min) tanh|l| of the raw Gaussian matrix's eigenvalues
    g1, g2 = gen(13), gen(13)
    A = shaped_recurrent_matrix(10, 0.8, 1.0, math.pi, g1)
    l0 = torch.linalg.eigvals(torch.randn(10, 10, generator=g2, dtype=F64) / math.sqrt(10))
    want = (0.8 + 0.2 * torch.tanh(l0.abs())).sort().values
    assert torch.allclose(torch.linalg.eigvals(A).abs().sort().values, want, atol=1e-12)


# ------------------------------------------------------------------ members and errors


def test_member_initialization_depends_on_its_seed_only():
    a = LRU([5, 6, 7], 8, r_min=0.5)
    b = LRU([7], 8, r_min=0.5)
    for name, p in b.named_parameters():
        assert torch.equal(dict(a.named_parameters())[name][2:3], p)
    one = a.member(1)
    x = torch.randn(2, 30, 1, generator=gen(14), dtype=F64)
    assert torch.equal(one(x)[0], a(x)[1])
    assert one.n_members == 1 and one.lam_mag.data_ptr() != a.lam_mag.data_ptr()


def test_per_member_inputs():
    S = DenseRNN([1, 2], 4)
    x = torch.randn(2, 3, 20, 1, generator=gen(15), dtype=F64)
    y = S(x)
    assert torch.allclose(y[1], S.member(1)(x[1])[0])


def test_bad_input_raises_clear_errors():
    with pytest.raises(TypeError, match="seeds"):
        LRU(3, 8)
    with pytest.raises(ValueError, match="heads"):
        DenseRNN([0], 8, heads=3)
    with pytest.raises(ValueError, match="magnitude"):
        LRU([0], 8, magnitude="log")
    with pytest.raises(ValueError, match="r_min"):
        LRU([0], 8, r_min=1.2)
    with pytest.raises(ValueError, match="r_min has 1 values for 2 members"):
        LRU([0, 1], 8, r_min=[0.5])
    with pytest.raises(ValueError, match="shape"):
        LRU([0], 8)(torch.zeros(3, 10))
    with pytest.raises(ValueError, match="method"):
        LRU([0], 8)(torch.zeros(1, 10, 1, dtype=F64), method="fft")
    with pytest.raises(ValueError, match="chunk"):
        diagonal_scan(torch.ones(2), torch.ones(5, 2), chunk=0)


def test_dense_float32_kernel_is_exact_to_float32_round_off():
    # float32 members with a small spectral radius: A^w underflows float32 (the kernel computes
    # in float64 on a CPU to avoid subnormal arithmetic); the result is the float64 kernel of the
    # same parameters rounded to float32 (relative 1e-6 of the largest entry), in float32, and
    # gradients reach the float32 parameters.
    S32 = DenseRNN(list(range(4)), 16, r_max=0.3, dtype=torch.float32)
    S64 = DenseRNN(list(range(4)), 16, r_max=0.3, dtype=torch.float64)
    with torch.no_grad():
        for p32, p64 in zip(S32.parameters(), S64.parameters()):
            p64.copy_(p32.double())
    K32, K64 = S32.kernel(300), S64.kernel(300)
    assert K32.dtype == torch.float32
    assert float((K32.double() - K64).abs().max() / K64.abs().max()) < 1e-6
    K32.square().sum().backward()
    assert S32.A.grad is not None and S32.A.grad.dtype == torch.float32 and bool(torch.isfinite(S32.A.grad).all())



# ------------------------------------------------------------------------- diagonal S4


def test_s4d_initialization_gives_the_ring_eigenvalues():
    # ZO's default S4 scheme: Delta = -log nu, A = -1 + i theta / Delta, so lambda = exp(Delta A)
    # = nu e^{i theta} -- the same eigenvalues as the complex diagonal student drawn from the same
    # seed (same ring draw), and the input scaled by Delta. Closed form, to round-off.
    s4 = S4D([3, 4], 16, r_min=0.99, r_max=0.999)
    cd = ComplexDiagonalRNN([3, 4], 16, r_min=0.99, r_max=0.999)
    assert torch.allclose(s4.lam().detach(), cd.lam().detach(), rtol=0, atol=1e-13)
    nu = cd.lam().detach().abs()
    assert torch.allclose(s4.delta().detach(), -torch.log(nu), rtol=1e-12, atol=0)
    assert torch.equal(s4.A_re.detach(), torch.full_like(nu, -1.0))
    # B is the complex diagonal student's draw scaled to unit variance (ZO's S4: B ~ N(0, 1))
    assert torch.allclose(s4.input_weights().detach(), -torch.log(nu) * 4.0 * torch.complex(cd.B_re, cd.B_im).detach(),
                          rtol=1e-12, atol=0)
    # at nu = 0.99 the step is ~0.01, as ZO's "Delta = 0.01"
    assert float(s4.delta().max()) <= -math.log(0.99) + 1e-12


def test_s4d_equals_its_textbook_recursion_and_gradients_match_finite_differences():
    # h_t = exp(Delta A) h_{t-1} + Delta B x_t, y_t = Re(C h_t) + D x_t written out by hand,
    # against both of the student's computations; and d loss / d (A_re, A_im, delta_raw) against
    # central finite differences (step 1e-6, truncation O(h^2) ~ 1e-12 relative).
    s4 = S4D([1], 6, r_min=0.9)
    x = torch.randn(2, 80, 1, generator=gen(2), dtype=F64)
    delta = torch.nn.functional.softplus(s4.delta_raw.detach()[0])
    lam = torch.exp(delta * torch.complex(s4.A_re.detach()[0], s4.A_im.detach()[0]))
    B = torch.complex(s4.B_re.detach()[0], s4.B_im.detach()[0])
    C = torch.complex(s4.C_re.detach()[0], s4.C_im.detach()[0])
    h = torch.zeros(2, 6, dtype=lam.dtype)
    ref = []
    for t in range(80):
        h = lam * h + delta * B * x[:, t, :]
        ref.append((h * C).sum(-1).real + s4.D.detach()[0] * x[:, t, 0])
    ref = torch.stack(ref, 1)
    assert rel_err(s4(x)[0, :, :, 0].detach(), ref) < 1e-12
    assert rel_err(s4(x, method="kernel")[0, :, :, 0].detach(), ref) < 1e-11

    def loss() -> torch.Tensor:
        return (s4(x) ** 2).mean()

    loss().backward()
    for name in ("A_re", "A_im", "delta_raw"):
        p = getattr(s4, name)
        for j in (0, 3):
            with torch.no_grad():
                p[0, j] += 1e-6
                up = loss().item()
                p[0, j] -= 2e-6
                down = loss().item()
                p[0, j] += 1e-6
            fd = (up - down) / 2e-6
            assert math.isclose(p.grad[0, j].item(), fd, rel_tol=1e-5, abs_tol=1e-9), (name, j)


def test_s4d_with_the_public_codes_phases_starts_near_the_real_axis():
    # ZO's code: A_im = 2 pi U / delta_raw with delta_raw = log(e^Delta - 1) < 0, so the initial
    # phase Delta A_im lies in (2 pi Delta / delta_raw, 0] -- at nu >= 0.99 (Delta <= 0.01005)
    # within 2 pi * 0.01005 / |log(e^0.01005 - 1)| = 0.0137 rad of the real axis. Moduli unchanged.
    zo = S4D([3, 4], 64, r_min=0.99, phases="zo_code")
    ring = S4D([3, 4], 64, r_min=0.99)
    lam = zo.lam().detach()
    bound = 2 * math.pi * 0.01005 / abs(math.log(math.expm1(0.01005)))
    assert float(lam.angle().max()) <= 0 and float(lam.angle().min()) >= -bound
    assert torch.allclose(lam.abs(), ring.lam().detach().abs(), rtol=1e-13)
    assert float(ring.lam().detach().angle().abs().max()) > 1.0  # the ring spreads them over the circle
    with pytest.raises(ValueError, match="phases"):
        S4D([0], 4, phases="random")


def test_dense_rnn_zo_code_rule_is_zo_construction():
    # ZO's recurrent_matrix_init, literally: every eigenvalue rotated, then the real part of the
    # non-real matrix; the student's first head is the generator's first d*d normals.
    import math
    from floss_utils.curse_of_memory.students import DenseRNN
    d, phase = 8, 0.3 * math.pi
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        A = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
        l, V = torch.linalg.eig(A)
        l2 = torch.tanh(l.abs()) * torch.exp(1j * torch.angle(l) * phase / math.pi)
        want = (V @ torch.diag(l2) @ torch.linalg.inv(V)).real
        got = DenseRNN([seed], d, max_phase=phase, real_eigenvalues="zo_code").A[0].detach()
        assert torch.allclose(got, want, atol=1e-12)
