"""Per-sample gradient accuracy of the issue-3 families against independent oracles.

* von Mises: dz/dκ = -(∂F/∂κ)/p against mpmath quadrature of ``∫_{-π}^{x} (cos t - A(κ)) p(t) dt``
  at 40 digits, κ from 1e-3 to 1e3; relative error ≤ 1e-10 (float64), ≤ 1e-4 (float32).
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
from stochgrad.special.vonmises import von_mises_cdf, von_mises_cdf_and_dz_dconcentration
from tests.implicit.test_issue3_examples import Rayleigh, logistic

KAPPAS = [1e-3, 1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 20.0, 25.0, 30.0, 100.0, 300.0, 1e3]
OFFSETS = [-3.5, -2.0, -1.0, -0.3, 0.1, 0.5, 1.5, 3.0]  # in units of min(1/√κ, 0.85)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


def _points():
    """(x, κ) pairs in [-π, π] exactly representable in float32, so that both dtypes and the
    oracle see the same numbers."""
    out = []
    for kappa in KAPPAS:
        spread = min(1 / math.sqrt(kappa), 0.85)
        for c in OFFSETS:
            pair = torch.tensor([c * spread, kappa], dtype=torch.float32)
            out.append(tuple(float(v) for v in pair))
    return out


def _nodes(x, kappa):
    """Quadrature break points: multiples of the width 1/√κ around the mode and below x."""
    width = 1 / mp.sqrt(kappa)
    marks = [m * width for m in (-16, -8, -4, -2, -1, 0, 1, 2, 4, 8, 16)]
    marks += [x - m * width for m in (64, 32, 16, 8, 4, 2, 1)]
    return sorted({-mp.pi, x, *(m for m in marks if -mp.pi < m < x)})


@functools.cache
def _von_mises_dz(x, kappa):
    """dz/dκ = -∫_{-π}^{x} (cos t - A(κ)) p(t)/p(x) dt at 40 digits."""
    with mp.workdps(40):
        x, kappa = mp.mpf(x), mp.mpf(kappa)
        ratio = mp.besseli(1, kappa) / mp.besseli(0, kappa)
        integrand = lambda t: (mp.cos(t) - ratio) * mp.exp(kappa * (mp.cos(t) - mp.cos(x)))  # noqa: E731
        return float(-mp.quad(integrand, _nodes(x, kappa)))


@functools.cache
def _von_mises_cdf(x, kappa):
    with mp.workdps(40):
        x, kappa = mp.mpf(x), mp.mpf(kappa)
        cdf = mp.quad(lambda t: mp.exp(kappa * (mp.cos(t) - 1)), _nodes(x, kappa))
        return float(cdf * mp.exp(kappa) / (2 * mp.pi * mp.besseli(0, kappa)))


def _relative_errors(dtype, scale=1.0):
    points = _points()
    x = torch.tensor([p[0] for p in points], dtype=dtype)
    kappa = torch.tensor([p[1] for p in points], dtype=dtype)
    _, _, dz = von_mises_cdf_and_dz_dconcentration(x, kappa)
    truth = torch.tensor([_von_mises_dz(*p) for p in points], dtype=torch.float64)
    return ((scale * dz.double() - truth) / truth).abs()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_von_mises_dz_dconcentration_matches_quadrature(dtype):
    errors = _relative_errors(dtype)
    assert errors.max() <= TOLERANCE[dtype], f"max relative error {errors.max():.2e}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_twin_von_mises_check_rejects_scaled_gradient(dtype):
    assert _relative_errors(dtype, scale=1.1).min() > TOLERANCE[dtype]


def test_von_mises_cdf_and_its_gradient_match_quadrature():
    points = _points()[::3]
    x = torch.tensor([p[0] for p in points], dtype=torch.float64, requires_grad=True)
    kappa = torch.tensor([p[1] for p in points], dtype=torch.float64, requires_grad=True)
    cdf = von_mises_cdf(x, kappa)
    truth = torch.tensor([_von_mises_cdf(*p) for p in points], dtype=torch.float64)
    assert torch.allclose(cdf, truth, rtol=1e-11, atol=0)
    grad_x, grad_kappa = torch.autograd.grad(cdf.sum(), (x, kappa))
    k = kappa.detach()
    density = torch.exp(k * (torch.cos(x.detach()) - 1)) / (2 * math.pi * torch.special.i0e(k))
    assert torch.allclose(grad_x, density, rtol=1e-12)
    dz = torch.tensor([_von_mises_dz(*p) for p in points], dtype=torch.float64)
    assert torch.allclose(grad_kappa, -density * dz, rtol=1e-10, atol=0)


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
        [_von_mises_dz(float(a), float(b)) for a, b in zip(x, kappa.detach(), strict=True)],
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
    tolerance = TOLERANCE[dtype]
    for z_i in z:
        grads = torch.autograd.grad(z_i, params, retain_graph=True)
        truth = _truncated_oracle(float(z_i.detach()), *(float(p.detach()) for p in params))
        for g, t in zip(grads, truth, strict=True):
            assert abs(float(g) - t) <= tolerance * max(abs(t), 1e-3 * tolerance)
        moved = max(abs(t) for t in truth)
        worst = max(abs(1.1 * float(g) - t) for g, t in zip(grads, truth, strict=True))
        assert worst > tolerance * moved  # twin: the scaled gradient is rejected
