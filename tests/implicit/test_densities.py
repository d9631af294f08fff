"""Densities, CDFs, moments and samplers of the implicit families vs scipy/mpmath.

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

F64 = torch.float64


def _np(t):
    return t.detach().numpy()


# --- Beta and Student t ---------------------------------------------------------------------


def test_cdfs_match_reference():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = torch.tensor([0.05, 0.3, 0.9, 0.999], dtype=torch.float64)
    expected = scipy_stats.beta(0.7, 2.5).cdf(x.numpy())
    got = irt.Beta(torch.tensor(0.7, dtype=torch.float64), 2.5).cdf(x)
    torch.testing.assert_close(got, torch.as_tensor(expected), rtol=1e-12, atol=0)
    t = torch.tensor([-3.0, -0.2, 0.0, 0.7, 12.0], dtype=torch.float64)
    expected = scipy_stats.t(3.5, loc=0.5, scale=2.0).cdf(t.numpy())
    got = irt.StudentT(torch.tensor(3.5, dtype=torch.float64), 0.5, 2.0).cdf(t)
    torch.testing.assert_close(got, torch.as_tensor(expected), rtol=1e-12, atol=1e-15)


# --- von Mises ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [1e-3, 0.5, 4.0, 60.0, 800.0])
def test_von_mises_density_cdf_moments_vs_scipy(kappa):
    loc = 0.4
    dist = irt.VonMises(torch.tensor(loc, dtype=F64), torch.tensor(kappa, dtype=F64))
    x = torch.linspace(loc - math.pi + 1e-3, loc + math.pi - 1e-3, 41, dtype=F64)
    ref = ss.vonmises(kappa, loc=loc)
    assert np.allclose(_np(dist.log_prob(x)), ref.logpdf(_np(x)), rtol=1e-12, atol=1e-12)
    if kappa < 10:  # beyond, scipy switches to a normal approximation (1.5e-6 off at κ = 60);
        # the CDF at large κ is checked against mpmath in tests/special/test_vonmises.py
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
