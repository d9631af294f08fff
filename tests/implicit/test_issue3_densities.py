"""Densities, CDFs, moments, KL divergences and samplers of the issue-3 families vs scipy/mpmath.

Goodness-of-fit checks use a Kolmogorov-Smirnov test of the samples against our CDF (seed 0,
n = 20,000, reject when p < 1e-4); each has a twin showing the test rejects a wrong law.
"""

import math

import numpy as np
import pytest
import scipy.integrate as si
import scipy.stats as ss
import torch
import torch.distributions as td

import stochgrad.implicit as irt
from stochgrad.kl import kl_monte_carlo
from tests.implicit.stats import Z_TOL

F64 = torch.float64


def _np(t):
    return t.detach().numpy()


# --- von Mises ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [1e-3, 0.5, 4.0, 60.0, 800.0])
def test_von_mises_density_cdf_moments_vs_scipy(kappa):
    loc = 0.4
    dist = irt.VonMises(torch.tensor(loc, dtype=F64), torch.tensor(kappa, dtype=F64))
    x = torch.linspace(loc - math.pi + 1e-3, loc + math.pi - 1e-3, 41, dtype=F64)
    ref = ss.vonmises(kappa, loc=loc)
    assert np.allclose(_np(dist.log_prob(x)), ref.logpdf(_np(x)), rtol=1e-12, atol=1e-12)
    if kappa < 10:  # beyond, scipy switches to a normal approximation (1.5e-6 off at κ = 60);
        # the CDF at large κ is checked against mpmath in test_issue3_gradient_accuracy.py
        assert np.allclose(_np(dist.cdf(x)), ref.cdf(_np(x)), rtol=1e-9, atol=1e-12)
    assert np.isclose(float(dist.entropy()), ref.entropy(), rtol=1e-10)
    ratio = float(torch.special.i1e(dist.concentration) / torch.special.i0e(dist.concentration))
    assert np.isclose(float(dist.variance), 1 - ratio, rtol=1e-12)


def _ks_pvalue(samples, cdf):
    return ss.kstest(samples, cdf).pvalue


def test_von_mises_samples_follow_our_cdf():
    dist = irt.VonMises(torch.tensor(0.0, dtype=F64), torch.tensor(3.0, dtype=F64))
    torch.manual_seed(0)
    z = dist.sample((20_000,))
    assert _ks_pvalue(_np(z), lambda v: _np(dist.cdf(torch.from_numpy(v)))) > 1e-4
    wrong = irt.VonMises(torch.tensor(0.0, dtype=F64), torch.tensor(3.3, dtype=F64))
    assert _ks_pvalue(_np(z), lambda v: _np(wrong.cdf(torch.from_numpy(v)))) < 1e-4


def test_von_mises_kl_vs_quadrature():
    p = irt.VonMises(torch.tensor(0.3, dtype=F64), torch.tensor(2.5, dtype=F64))
    q = td.VonMises(torch.tensor(-1.0, dtype=F64), torch.tensor(0.7, dtype=F64))
    kl = float(td.kl_divergence(p, q))

    def integrand(x):
        lp, lq = ss.vonmises.logpdf(x, 2.5, loc=0.3), ss.vonmises.logpdf(x, 0.7, loc=-1.0)
        return np.exp(lp) * (lp - lq)

    reference, _ = si.quad(integrand, -math.pi + 0.3, math.pi + 0.3, epsabs=1e-13)
    assert math.isclose(kl, reference, rel_tol=1e-9)
    assert float(td.kl_divergence(p, p)) == pytest.approx(0.0, abs=1e-14)


# --- truncated normal ------------------------------------------------------------------------

MODERATE = [(0.3, 1.2, -1.0, 2.0), (1.0, 2.0, -math.inf, -1.0), (-1.0, 0.5, 0.0, math.inf)]


@pytest.mark.parametrize("case", MODERATE, ids=str)
def test_truncated_normal_vs_scipy(case):
    loc, scale, low, high = case
    dist = irt.TruncatedNormal(*(torch.tensor(v, dtype=F64) for v in case))
    ref = ss.truncnorm((low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale)
    x = torch.from_numpy(ref.ppf(np.linspace(0.01, 0.99, 25)))
    assert np.allclose(_np(dist.log_prob(x)), ref.logpdf(_np(x)), rtol=1e-12)
    assert np.allclose(_np(dist.cdf(x)), ref.cdf(_np(x)), rtol=1e-12)
    assert np.allclose(_np(dist.icdf(dist.cdf(x))), _np(x), rtol=1e-10)
    assert np.isclose(float(dist.mean), ref.mean(), rtol=1e-12)
    assert np.isclose(float(dist.variance), ref.var(), rtol=1e-10)
    mass = ss.norm.cdf(high, loc, scale) - ss.norm.cdf(low, loc, scale)
    log_density = lambda v: ss.norm.logpdf(v, loc, scale) - math.log(mass)  # noqa: E731
    entropy, _ = si.quad(lambda v: -math.exp(log_density(v)) * log_density(v), low, high)
    assert np.isclose(float(dist.entropy()), entropy, rtol=1e-9)


def test_truncated_normal_far_tail_entropy_vs_quadrature():
    # scipy's entropy loses all digits here; direct quadrature does not.
    dist = irt.TruncatedNormal(*(torch.tensor(v, dtype=F64) for v in (0.0, 1.0, 8.0, 9.0)))
    mass = ss.norm.sf(8.0) - ss.norm.sf(9.0)

    def integrand(x):
        log_p = ss.norm.logpdf(x) - math.log(mass)
        return -math.exp(log_p) * log_p

    reference, _ = si.quad(integrand, 8.0, 9.0, epsabs=1e-14)
    assert math.isclose(float(dist.entropy()), reference, rel_tol=1e-9)


def test_truncated_normal_samples_follow_scipy():
    case = (0.5, 1.5, 1.0, 6.0)
    dist = irt.TruncatedNormal(*(torch.tensor(v, dtype=F64) for v in case))
    torch.manual_seed(0)
    z = _np(dist.sample((20_000,)))
    good = ss.truncnorm((1.0 - 0.5) / 1.5, (6.0 - 0.5) / 1.5, loc=0.5, scale=1.5)
    wrong = ss.truncnorm((1.0 - 0.8) / 1.5, (6.0 - 0.8) / 1.5, loc=0.8, scale=1.5)
    assert _ks_pvalue(z, good.cdf) > 1e-4
    assert _ks_pvalue(z, wrong.cdf) < 1e-4


def _kl_quadrature(p_args, q_logpdf, low, high):
    ref = ss.truncnorm((p_args[2] - p_args[0]) / p_args[1], (p_args[3] - p_args[0]) / p_args[1])
    p = ss.truncnorm(ref.a, ref.b, loc=p_args[0], scale=p_args[1])
    value, _ = si.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q_logpdf(x)), low, high, epsabs=1e-13)
    return value


def test_truncated_normal_kl_vs_quadrature():
    p_args, q_args = (0.3, 1.2, -1.0, 2.0), (0.0, 2.0, -3.0, 4.0)
    p = irt.TruncatedNormal(*(torch.tensor(v, dtype=F64) for v in p_args))
    q = irt.TruncatedNormal(*(torch.tensor(v, dtype=F64) for v in q_args))
    q_ref = ss.truncnorm(-3.0 / 2.0, 4.0 / 2.0, loc=0.0, scale=2.0)
    assert math.isclose(
        float(td.kl_divergence(p, q)), _kl_quadrature(p_args, q_ref.logpdf, -1, 2), rel_tol=1e-9
    )
    normal = td.Normal(torch.tensor(0.5, dtype=F64), torch.tensor(0.8, dtype=F64))
    to_normal = _kl_quadrature(p_args, ss.norm(0.5, 0.8).logpdf, -1, 2)
    assert math.isclose(float(td.kl_divergence(p, normal)), to_normal, rel_tol=1e-9)
    assert math.isinf(float(td.kl_divergence(q, p)))  # q's support is wider than p's


# --- mixtures -------------------------------------------------------------------------------


def _hetero():
    return irt.Mixture(
        [td.Normal(-1.0, 0.5), td.Gumbel(1.0, 0.8), td.Gamma(3.0, 2.0)],
        weights=torch.tensor([0.2, 0.5, 0.3]),
    )


def _hetero_scipy_cdf(x):
    return (
        0.2 * ss.norm(-1.0, 0.5).cdf(x)
        + 0.5 * ss.gumbel_r(1.0, 0.8).cdf(x)
        + 0.3 * ss.gamma(3.0, scale=0.5).cdf(x)
    )


def test_mixture_density_cdf_moments_vs_scipy():
    mix = _hetero()
    x = torch.linspace(-3.0, 6.0, 37)
    pdf = (
        0.2 * ss.norm(-1.0, 0.5).pdf(_np(x))
        + 0.5 * ss.gumbel_r(1.0, 0.8).pdf(_np(x))
        + 0.3 * ss.gamma(3.0, scale=0.5).pdf(_np(x))
    )
    assert np.allclose(np.exp(_np(mix.log_prob(x))), pdf, rtol=1e-5, atol=1e-7)
    assert np.allclose(_np(mix.cdf(x)), _hetero_scipy_cdf(_np(x)), rtol=1e-5, atol=1e-7)
    mean = 0.2 * -1.0 + 0.5 * ss.gumbel_r(1.0, 0.8).mean() + 0.3 * 1.5
    assert math.isclose(float(mix.mean), mean, rel_tol=1e-5)
    second = 0.2 * 1.25 + 0.5 * ss.gumbel_r(1.0, 0.8).moment(2) + 0.3 * (0.75 + 2.25)
    assert math.isclose(float(mix.variance), second - mean**2, rel_tol=1e-5)


def test_mixture_samples_follow_the_mixture_cdf():
    torch.manual_seed(0)
    z = _np(_hetero().sample((20_000,)).double())
    assert _ks_pvalue(z, _hetero_scipy_cdf) > 1e-4
    assert _ks_pvalue(z, lambda x: _hetero_scipy_cdf(x - 0.05)) < 1e-4


def test_mixture_same_family_samples_follow_its_cdf():
    mix = irt.MixtureSameFamily(
        td.Categorical(logits=torch.tensor([0.0, 0.5], dtype=F64)),
        td.Laplace(torch.tensor([-2.0, 1.0], dtype=F64), torch.tensor([0.5, 1.0], dtype=F64)),
    )
    torch.manual_seed(0)
    z = _np(mix.sample((20_000,)))
    assert _ks_pvalue(z, lambda v: _np(mix.cdf(torch.from_numpy(v)))) > 1e-4
    assert _ks_pvalue(z, lambda v: _np(mix.cdf(torch.from_numpy(v) - 0.05))) < 1e-4


# --- KL dispatch and the Monte Carlo fallback -----------------------------------------------


def test_torch_closed_form_kls_dispatch_to_stochgrad_classes():
    pairs = [
        (irt.Gamma, td.Gamma, ([2.0, 0.5], [1.5, 2.0])),
        (irt.Beta, td.Beta, ([2.0, 0.5], [1.5, 2.0])),
        (irt.Dirichlet, td.Dirichlet, ([[2.0, 0.5, 1.0]], [[1.5, 2.0, 0.3]])),
    ]
    for ours, theirs, (a, b) in pairs:
        a, b = torch.tensor(a, dtype=F64), torch.tensor(b, dtype=F64)
        if theirs is td.Dirichlet:
            expected = td.kl_divergence(theirs(a), theirs(b))
            got = td.kl_divergence(ours(a), ours(b))
        else:
            expected = td.kl_divergence(theirs(a, b), theirs(b, a))
            got = td.kl_divergence(ours(a, b), ours(b, a))
        assert torch.allclose(got, expected, rtol=1e-14)


def _mc_kl_z_score(q):
    p = irt.Factorized(td.Gumbel(torch.tensor(0.3, dtype=F64), torch.tensor(1.2, dtype=F64)))
    torch.manual_seed(0)
    draws = torch.stack([kl_monte_carlo(p, q, num_samples=1) for _ in range(4000)])
    exact = td.kl_divergence(p.base, td.Gumbel(torch.tensor(0.0, dtype=F64), 1.0))
    return float((draws.mean() - exact) / (draws.std() / len(draws) ** 0.5))


def test_monte_carlo_kl_is_unbiased():
    q = td.Gumbel(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    assert abs(_mc_kl_z_score(q)) < Z_TOL


def test_twin_monte_carlo_kl_check_rejects_wrong_reference():
    wrong = td.Gumbel(torch.tensor(0.0, dtype=F64), torch.tensor(1.25, dtype=F64))
    assert abs(_mc_kl_z_score(wrong)) > Z_TOL


def test_monte_carlo_kl_gradients_flow_and_arguments_are_checked():
    scale = torch.tensor(1.2, dtype=F64, requires_grad=True)
    p = irt.Factorized(td.Laplace(torch.tensor(0.0, dtype=F64), scale))
    kl = kl_monte_carlo(p, td.Normal(torch.tensor(0.0, dtype=F64), 1.0), num_samples=100)
    (grad,) = torch.autograd.grad(kl, scale)
    assert torch.isfinite(grad)
    with pytest.raises(ValueError, match="num_samples"):
        kl_monte_carlo(p, p, num_samples=0)
