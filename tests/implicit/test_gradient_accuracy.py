"""Gradient accuracy of the implicit families, per sample, against independent oracles.

* Gamma, Beta, Student t: dz/dθ at each sampled z against a 40-digit mpmath oracle of
  -(∂F/∂θ)/p; maximum relative error ≤ 1e-10 in float64 and ≤ 1e-4 in float32. The twin tests show
  the same check rejects torch's native gradients and a gradient scaled by 1.1.
* von Mises: rsample's dz/dκ at its own draws against the mpmath quadrature oracle (the kernel
  itself is tested in tests/special/test_vonmises.py).
* mixtures: the gradient of a univariate sample is exactly -(∂F/∂θ)/p (autograd of a separate
  float64 CDF); the triangular solve of a diagonal mixture equals -J_z⁻¹ J_θ from dense Jacobians.
* Factorized: equal to torch's explicit reparameterization at the same draw.
* TruncatedNormal: all four gradients against mpmath derivatives of the CDF, tails included.
Every check has a twin showing it rejects the gradient scaled by 1.1.
"""

import functools
import math

import mpmath as mp
import pytest
import torch
import torch.distributions as td

import stochgrad.implicit as irt
from stochgrad.implicit.factorized import Factorized
from tests.implicit.examples import Rayleigh, logistic
from tests.special import oracle

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
# 3, 10 and 30 are where the Gamma kernel switches to shorter quadrature rules (special/gamma.py).
GAMMA_CONCENTRATIONS = [1e-3, 1e-2, 0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 30.0, 100.0, 500.0, 1e3, 1e4]
# Huge concentrations: the float32 draw lies a few ulps from a, so x - a and (x - a)/a are
# quantised; before the exponent was formed without cancellation, float32 erred by 2e-4 at 1e8
# and 8 (NaN at 1e20), float64 by 2e-9 at 1e15 and 2e-7 at 1e20.
HUGE_CONCENTRATIONS = [1e6, 1e8, 1e10, 1e12, 1e15, 1e20]
_SLOW_ORACLE = pytest.mark.slow  # the quadrature oracle for max(a, b) >= 200 takes ~10 s a case
BETA_PAIRS = [
    (1e-3, 1e-3), (0.01, 2.0), (2.0, 0.01), (0.05, 0.05), (0.5, 0.5), (1.0, 1.0), (2.0, 3.0),
    (10.0, 10.0), (100.0, 1.0), (1e-3, 2.0), (2.0, 1e-3), (1e-3, 30.0), (0.05, 250.0),
    # log(1 - x) from 1 - x rounded cost 2e-5 in dz/db at (2, 1e12) (x ~ 5e-12)
    (2.0, 1e12), (1e6, 3.0),
    *(pytest.param(a, b, marks=_SLOW_ORACLE) for a, b in
      [(500.0, 0.5), (0.5, 500.0), (1e3, 1e3), (1e4, 1e4), (1e4, 1e-3), (3e3, 20.0)]),
]  # fmt: skip
# dt/dν -> 0 as ν grows and its formula cancels: at ν = 1e3 float64 reaches ~1e-9 (see docs).
STUDENT_DF = [0.3, 1.0, 3.0, 30.0, 100.0]
SAMPLES = 6


def max_relative_error(values, references):
    return max(abs(v - r) / abs(r) for v, r in zip(values, references, strict=True) if r != 0)


def gamma_gradients(a, dtype, seed=0):
    torch.manual_seed(seed)
    alpha = torch.full((SAMPLES,), a, dtype=dtype, requires_grad=True)
    z = irt.Gamma(alpha, torch.ones((), dtype=dtype)).rsample()
    z.sum().backward()
    refs = [oracle.gamma_dz_dconcentration(alpha[i].item(), z[i].item()) for i in range(SAMPLES)]
    return alpha.grad.tolist(), refs


def beta_gradients(a, b, dtype, seed=0):
    torch.manual_seed(seed)
    c1 = torch.full((SAMPLES,), a, dtype=dtype, requires_grad=True)
    c0 = torch.full((SAMPLES,), b, dtype=dtype, requires_grad=True)
    z = irt.Beta(c1, c0).rsample()
    z.sum().backward()
    refs = [oracle.beta_dz_dconcentrations(c1[i].item(), c0[i].item(), z[i].item()) for i in
            range(SAMPLES)]  # fmt: skip
    return (c1.grad.tolist(), [r[0] for r in refs]), (c0.grad.tolist(), [r[1] for r in refs])


@pytest.mark.parametrize("a", GAMMA_CONCENTRATIONS + HUGE_CONCENTRATIONS)
def test_gamma_concentration_gradient_matches_oracle(a, dtype):
    grads, refs = gamma_gradients(a, dtype)
    assert max_relative_error(grads, refs) <= TOL[dtype]


@pytest.mark.parametrize(("a", "b"), BETA_PAIRS)
def test_beta_gradients_match_oracle(a, b, dtype):
    for grads, refs in beta_gradients(a, b, dtype):
        assert max_relative_error(grads, refs) <= TOL[dtype]


@pytest.mark.parametrize("df", STUDENT_DF)
def test_studentt_df_gradient_matches_oracle(df, dtype):
    torch.manual_seed(0)
    nu = torch.full((SAMPLES,), df, dtype=dtype, requires_grad=True)
    t = irt.StudentT(nu).rsample()
    t.sum().backward()
    refs = [oracle.studentt_dz_ddf(nu[i].item(), t[i].item()) for i in range(SAMPLES)]
    assert max_relative_error(nu.grad.tolist(), refs) <= TOL[dtype]


def test_scaled_gradient_fails_the_oracle_check():
    grads, refs = gamma_gradients(5.0, torch.float64)
    assert max_relative_error([1.1 * g for g in grads], refs) > TOL[torch.float64]
    (grads, refs), _ = beta_gradients(500.0, 0.5, torch.float64)
    assert max_relative_error([1.1 * g for g in grads], refs) > TOL[torch.float64]


@pytest.mark.parametrize(("a", "b"), [(2.0, 3.0), (500.0, 0.5)])
def test_torch_native_beta_gradient_fails_the_oracle_check(a, b):
    # The check discriminates: torch's own rsample gradient is far less accurate.
    torch.manual_seed(0)
    c1 = torch.full((SAMPLES,), a, dtype=torch.float64, requires_grad=True)
    z = torch.distributions.Beta(c1, torch.full((SAMPLES,), b, dtype=torch.float64)).rsample()
    z.sum().backward()
    refs = [oracle.beta_dz_dconcentrations(a, b, z[i].item())[0] for i in range(SAMPLES)]
    assert max_relative_error(c1.grad.tolist(), refs) > TOL[torch.float64]


# Fixed points where one concentration is ~1e-3 (found in review): torch's float64 trigamma
# (3.7e-10 at 2) and a 36-node rule (1.2e-10 for dz/da near the median) each broke 1e-10 here.
SMALL_CONCENTRATION_POINTS = [
    (1e-3, 2.0, 8.576834639230958e-05),
    (1e-3, 3.0, 5.7760018563957835e-05),
    (1e-3, 1.0, 4.7999566943093575e-04),
    (2.0, 1e-3, 1 - 2**-53),
]


@pytest.mark.parametrize(("a", "b", "x"), SMALL_CONCENTRATION_POINTS)
def test_beta_gradients_at_small_concentration_points(a, b, x):
    from stochgrad.special import beta_grad

    got = beta_grad(*(torch.tensor([v], dtype=torch.float64) for v in (a, b, x)))
    refs = oracle.beta_dz_dconcentrations(a, b, x)
    for g, r in zip(got, refs, strict=True):
        assert abs(g.item() - r) <= TOL[torch.float64] * abs(r)


# At the median of Beta(1e6, 1e6) (x = 1/2, where φ is near-Gaussian) the Newton iteration for
# the quadrature's end point started ~1/√κ-fold beyond it and three steps left the rule spread
# over 5x the integrand: 3.3e-5 before the quadratic start (special/beta.py), 1.7e-12 after.
@_SLOW_ORACLE
def test_beta_gradients_at_the_median_of_large_concentrations():
    from stochgrad.special import beta_grad

    got = beta_grad(*(torch.tensor([v], dtype=torch.float64) for v in (1e6, 1e6, 0.5)))
    refs = oracle.beta_dz_dconcentrations(1e6, 1e6, 0.5)
    for g, r in zip(got, refs, strict=True):
        assert abs(g.item() - r) <= TOL[torch.float64] * abs(r)


# --- von Mises ---------------------------------------------------------------------------------


def test_von_mises_rsample_gradients_at_samples():
    """The class path: rsample's dz/dκ at its own draws (wrapped around loc) vs the oracle."""
    torch.manual_seed(0)
    kappa = torch.tensor([1e-3, 0.7, 15.0, 400.0], dtype=torch.float64).repeat(3)
    kappa.requires_grad_(True)
    loc = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)  # near π: wraps
    z = irt.VonMises(loc, kappa).rsample()
    grad_loc, grad_kappa = torch.autograd.grad(z.sum(), (loc, kappa))
    assert grad_loc == len(z)
    x = torch.remainder(z.detach() - 3.0 + math.pi, 2 * math.pi) - math.pi
    truth = torch.tensor(
        [
            oracle.von_mises_dz_dconcentration(float(a), float(b))
            for a, b in zip(x, kappa.detach(), strict=True)
        ],
        dtype=torch.float64,
    )
    assert torch.allclose(grad_kappa, truth, rtol=1e-10, atol=0)
    assert not torch.allclose(1.1 * grad_kappa, truth, rtol=1e-10, atol=0)


# --- mixtures ---------------------------------------------------------------------------------


def _normal_cdf(x, loc, scale):
    return 0.5 * torch.erfc(-(x - loc) / (scale * math.sqrt(2)))


def _laplace_cdf(x, loc, scale):
    s = (x - loc) / scale
    return torch.where(s < 0, 0.5 * torch.exp(s), 1 - 0.5 * torch.exp(-s))


def _gumbel_cdf(x, loc, scale):
    return torch.exp(-torch.exp(-(x - loc) / scale))


def _implicit_reference(z, cdf, density, params):
    grads = torch.autograd.grad(cdf(z), params)
    return [-g / density for g in grads]


def _check(grads, reference, scale=1.0):
    return all(
        torch.allclose(scale * g, r, rtol=1e-10, atol=1e-14)
        for g, r in zip(grads, reference, strict=True)
    )


def _mixture_same_family_case():
    logits = torch.tensor([0.3, -0.6, 0.1], dtype=torch.float64, requires_grad=True)
    loc = torch.tensor([-3.0, 0.2, 9.0], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([0.5, 1.5, 0.3], dtype=torch.float64, requires_grad=True)
    dist = irt.MixtureSameFamily(td.Categorical(logits=logits), td.Normal(loc, scale))

    def cdf(x):
        return (torch.softmax(logits, -1) * _normal_cdf(x, loc, scale)).sum()

    return dist, cdf, (logits, loc, scale)


def _mixture_case():
    logits = torch.tensor([0.3, -0.6, 0.1], dtype=torch.float64, requires_grad=True)
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (-2, 1, 2, 0.5)]
    params += [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (5, 0.7)]
    dist = irt.Mixture(
        [td.Normal(*params[0:2]), td.Gumbel(*params[2:4]), td.Laplace(*params[4:6])],
        logits=logits,
    )

    def cdf(x):
        per = torch.stack(
            [
                _normal_cdf(x, *params[0:2]),
                _gumbel_cdf(x, *params[2:4]),
                _laplace_cdf(x, *params[4:6]),
            ]
        )
        return (torch.softmax(logits, -1) * per).sum()

    return dist, cdf, (logits, *params)


@pytest.mark.parametrize("case", [_mixture_same_family_case, _mixture_case])
def test_univariate_mixture_gradient_is_exact_implicit(case):
    dist, cdf, params = case()
    torch.manual_seed(1)
    z = dist.rsample((12,))
    for z_i in z:
        grads = torch.autograd.grad(z_i, params, retain_graph=True)
        density = dist.log_prob(z_i.detach()).exp().detach()
        reference = _implicit_reference(z_i.detach(), cdf, density, params)
        assert _check(grads, reference)
        assert not _check(grads, reference, scale=1.1)


def _conditional_cdfs(z, logits, loc, scale):
    """u_d = Σ_k π_k^(d) F_kd(z_d): the distributional transform, written independently."""
    out = []
    for d in range(z.shape[-1]):
        log_prior = torch.log_softmax(logits, -1)
        log_lik = td.Normal(loc[:, :d], scale[:, :d]).log_prob(z[:d]).sum(-1)
        weights = torch.softmax(log_prior + log_lik, -1)
        out.append((weights * _normal_cdf(z[d], loc[:, d], scale[:, d])).sum())
    return torch.stack(out)


def _at_params(z, params):
    return _conditional_cdfs(z, *params)


def test_diagonal_mixture_triangular_solve_matches_dense_jacobian():
    torch.manual_seed(2)
    k, d = 3, 4
    logits = torch.randn(k, dtype=torch.float64, requires_grad=True)
    loc = (2 * torch.randn(k, d, dtype=torch.float64)).requires_grad_()
    scale = (0.5 + torch.rand(k, d, dtype=torch.float64)).requires_grad_()
    dist = irt.MixtureSameFamily(
        td.Categorical(logits=logits), td.Independent(td.Normal(loc, scale), 1)
    )
    params = (logits, loc, scale)
    for z in dist.rsample((3,)):
        ours = torch.stack(
            [
                torch.cat(
                    [g.reshape(-1) for g in torch.autograd.grad(z[i], params, retain_graph=True)]
                )
                for i in range(d)
            ]
        )
        point = z.detach()
        detached = tuple(p.detach() for p in params)
        jac_z = torch.autograd.functional.jacobian(
            functools.partial(_at_params, params=detached), point
        )
        jac_theta = torch.autograd.functional.jacobian(
            functools.partial(_conditional_cdfs, point), detached
        )
        jac_theta = torch.cat([j.reshape(d, -1) for j in jac_theta], 1)
        dense = -torch.linalg.solve(jac_z, jac_theta)
        assert torch.allclose(ours, dense, rtol=1e-9, atol=1e-12)
        assert not torch.allclose(1.1 * ours, dense, rtol=1e-9, atol=1e-12)


# --- Factorized ---------------------------------------------------------------------------------

FACTORIZED = {
    "laplace": (td.Laplace, (0.5, 1.3)),
    "cauchy": (td.Cauchy, (0.5, 0.8)),
    "gumbel": (td.Gumbel, (0.5, 1.3)),
    "logistic": (logistic, (0.5, 0.9)),
    "lognormal": (td.LogNormal, (0.1, 0.4)),
    "weibull": (td.Weibull, (1.3, 1.8)),
    "kumaraswamy": (td.Kumaraswamy, (2.0, 3.0)),
    "halfnormal": (td.HalfNormal, (1.4,)),
    "exponential": (td.Exponential, (0.7,)),
}


def _factorized_grads(name, seed, scale=1.0):
    make, values = FACTORIZED[name]
    params = [torch.full((6,), v, dtype=torch.float64, requires_grad=True) for v in values]
    torch.manual_seed(seed)
    explicit = make(*params).rsample()
    torch.manual_seed(seed)
    implicit = Factorized(make(*params)).rsample()
    assert torch.equal(explicit.detach(), implicit.detach())
    ours = torch.autograd.grad(implicit.sum(), params)
    theirs = torch.autograd.grad(explicit.sum(), params)
    return [scale * g for g in ours], theirs


@pytest.mark.parametrize("name", sorted(FACTORIZED))
def test_factorized_equals_explicit_reparameterization(name):
    ours, theirs = _factorized_grads(name, seed=3)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FACTORIZED))
def test_twin_factorized_check_rejects_scaled_gradient(name):
    ours, theirs = _factorized_grads(name, seed=3, scale=1.1)
    assert not all(
        torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(ours, theirs, strict=True)
    )


def test_factorized_user_defined_and_independent():
    scale = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    torch.manual_seed(4)
    z = Factorized(td.Independent(Rayleigh(scale), 1)).rsample((5,))
    assert z.shape == (5, 2)
    (grad,) = torch.autograd.grad(z.sum(), scale)
    assert torch.allclose(grad, (z.detach() / scale.detach()).sum(0), rtol=1e-12)  # z = σ·g(u)
    assert not torch.allclose(1.1 * grad, (z.detach() / scale.detach()).sum(0), rtol=1e-12)


# --- TruncatedNormal --------------------------------------------------------------------------

TRUNCATED = [
    (0.3, 1.2, -1.0, 2.0),
    (0.0, 1.0, 8.0, 9.0),
    (0.0, 1.0, -30.0, -29.0),
    (1.0, 2.0, -float("inf"), -4.0),
    (-1.0, 0.5, 0.0, float("inf")),
    (0.0, 1.0, -0.1, 0.1),
]


def _truncated_oracle(z, loc, scale, low, high):
    """Implicit gradients -(∂F/∂θ)/p from mpmath derivatives of the CDF (30 digits)."""
    with mp.workdps(30):

        def cdf(x, m, s, a, b):
            lower = mp.ncdf((a - m) / s) if mp.isfinite(a) else 0
            upper = mp.ncdf((b - m) / s) if mp.isfinite(b) else 1
            return (mp.ncdf((x - m) / s) - lower) / (upper - lower)

        point = [mp.mpf(v) for v in (z, loc, scale, low, high)]

        def along(i):
            def moved(t):
                shifted = list(point)
                shifted[i] = point[i] + t
                return cdf(*shifted)

            return mp.diff(moved, 0)

        density = along(0)
        return [float(-along(i) / density) if mp.isfinite(point[i]) else 0.0 for i in range(1, 5)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", TRUNCATED, ids=[str(c) for c in TRUNCATED])
def test_truncated_normal_gradients_match_mpmath(case, dtype):
    params = [torch.tensor(v, dtype=dtype, requires_grad=True) for v in case]
    torch.manual_seed(5)
    z = irt.TruncatedNormal(*params).rsample((3,))
    tolerance = TOL[dtype]
    for z_i in z:
        grads = torch.autograd.grad(z_i, params, retain_graph=True)
        truth = _truncated_oracle(float(z_i.detach()), *(float(p.detach()) for p in params))
        for g, t in zip(grads, truth, strict=True):
            assert abs(float(g) - t) <= tolerance * max(abs(t), 1e-3 * tolerance)
        moved = max(abs(t) for t in truth)
        worst = max(abs(1.1 * float(g) - t) for g, t in zip(grads, truth, strict=True))
        assert worst > tolerance * moved  # twin: the scaled gradient is rejected
