"""The KL divergences of stochgrad.kl: closed forms against quadrature or Monte Carlo.

Quadrature references (scipy) are met to a relative 1e-9. Monte Carlo checks fix seed 0 and
accept within 4.5 (implicit) or 5 (relaxed) standard errors; each has a twin that fails on a
wrong value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate as si
import scipy.stats as ss
import torch
import torch.distributions as td
from torch.distributions import kl_divergence

import stochgrad.implicit as irt
import stochgrad.relaxed as relaxed
from stochgrad.kl import kl_monte_carlo
from tests.implicit.stats import Z_TOL

F64 = torch.float64
NUM_SAMPLES = 20_000


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# --- stochgrad.implicit: von Mises, truncated normal ----------------------------------------


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


# --- stochgrad.relaxed: InvertibleGaussian, LogisticNormalSoftmax ---------------------------

KL_PAIRS = [
    (
        "InvertibleGaussian",
        lambda: relaxed.InvertibleGaussian(t(0.3, -0.2), t(0.8, 1.1), 0.7),
        lambda: relaxed.InvertibleGaussian(t(-0.1, 0.4), t(1.0, 0.6), 0.7),
    ),
    (
        "LogisticNormalSoftmax",
        lambda: relaxed.LogisticNormalSoftmax(t(0.2, -0.4, 0.1), t(0.7, 1.0, 1.3)),
        lambda: relaxed.LogisticNormalSoftmax(t(0.0, 0.3, -0.2), t(1.0, 0.8, 1.1)),
    ),
]


def _kl_within_five_standard_errors(p, q, claimed: torch.Tensor) -> bool:
    torch.manual_seed(0)
    z = p.sample((NUM_SAMPLES,))
    log_ratio = p.log_prob(z) - q.log_prob(z)
    standard_error = log_ratio.std() / NUM_SAMPLES**0.5
    return abs(log_ratio.mean() - claimed).item() < 5 * standard_error.item()


@pytest.mark.parametrize("name, make_p, make_q", KL_PAIRS, ids=[n for n, _, _ in KL_PAIRS])
def test_kl_matches_monte_carlo_of_log_prob(name, make_p, make_q):
    p, q = make_p(), make_q()
    assert _kl_within_five_standard_errors(p, q, kl_divergence(p, q))


@pytest.mark.parametrize("name, make_p, make_q", KL_PAIRS, ids=[n for n, _, _ in KL_PAIRS])
def test_kl_twin_rejects_a_wrong_value(name, make_p, make_q):
    p, q = make_p(), make_q()
    assert not _kl_within_five_standard_errors(p, q, 1.1 * kl_divergence(p, q))


@pytest.mark.parametrize("name, make_p, make_q", KL_PAIRS, ids=[n for n, _, _ in KL_PAIRS])
def test_kl_of_a_law_with_itself_is_zero_and_batches(name, make_p, make_q):
    p = make_p()
    torch.testing.assert_close(kl_divergence(p, p), torch.zeros((), dtype=torch.float64))
    batched = p.expand((4,))
    assert kl_divergence(batched, make_q().expand((4,))).shape == (4,)


# ------------------------------------------------------------ IGR at any temperatures
# KL(p || q) between IGR laws in closed form, at any temperatures and deltas.
#
# Checked against the Monte Carlo mean of ``log p(z) - log q(z)``, ``z ~ p``: seed 0, 40,000 draws,
# accepted within 5 standard errors; twins must be rejected: the claim scaled by 1.1, and the KL of
# the two underlying Gaussians (what the equal-temperature formula would give).

IGR_NUM_SAMPLES = 40_000


IGR_PAIRS = {
    "equal_temperatures": (
        lambda: relaxed.InvertibleGaussian(t(0.3, -0.2), t(0.8, 1.1), 0.7),
        lambda: relaxed.InvertibleGaussian(t(-0.1, 0.4), t(1.0, 0.6), 0.7),
    ),
    "unequal_temperatures": (
        lambda: relaxed.InvertibleGaussian(t(0.3, -0.2), t(0.8, 1.1), 0.7),
        lambda: relaxed.InvertibleGaussian(t(-0.1, 0.4), t(1.0, 0.6), 0.4),
    ),
    "unequal_temperatures_and_deltas": (
        lambda: relaxed.InvertibleGaussian(t(0.3, -0.2, 0.5), t(0.8, 1.1, 0.5), 1.3, 0.5),
        lambda: relaxed.InvertibleGaussian(t(-0.1, 0.4, 0.0), t(1.0, 0.6, 0.9), 0.6, 2.0),
    ),
    "batched_temperatures": (
        lambda: relaxed.InvertibleGaussian(t(0.3, -0.2), t(0.8, 1.1), t(0.5, 1.0, 2.0)),
        lambda: relaxed.InvertibleGaussian(t(-0.1, 0.4), t(1.0, 0.6), t(1.0, 0.3, 2.0)),
    ),
}


def _igr_z_scores(p, q, claimed: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    z = p.sample((IGR_NUM_SAMPLES,))
    log_ratio = p.log_prob(z) - q.log_prob(z)
    standard_error = log_ratio.std(0) / IGR_NUM_SAMPLES**0.5
    return (log_ratio.mean(0) - claimed).abs() / standard_error


@pytest.mark.parametrize("name", list(IGR_PAIRS))
def test_igr_kl_matches_monte_carlo(name):
    p, q = (make() for make in IGR_PAIRS[name])
    kl = kl_divergence(p, q)
    assert kl.shape == p.batch_shape
    assert (_igr_z_scores(p, q, kl) < 5).all()


@pytest.mark.parametrize("name", list(IGR_PAIRS))
def test_igr_kl_twin_scaled_claim_is_rejected(name):
    p, q = (make() for make in IGR_PAIRS[name])
    assert (_igr_z_scores(p, q, 1.1 * kl_divergence(p, q)) > 5).all()


@pytest.mark.parametrize("name", [n for n in IGR_PAIRS if n != "equal_temperatures"])
def test_igr_kl_twin_gaussian_kl_is_rejected_at_unequal_temperatures(name):
    # The KL of the Gaussians y = loc + scale ε is the right answer only when t and δ agree.
    p, q = (make() for make in IGR_PAIRS[name])
    gaussians = kl_divergence(td.Normal(p.loc, p.scale), td.Normal(q.loc, q.scale)).sum(-1)
    assert (_igr_z_scores(p, q, gaussians.expand(p.batch_shape)) > 5).any()


def test_igr_kl_of_a_law_with_itself_is_zero():
    p = IGR_PAIRS["unequal_temperatures_and_deltas"][0]()
    torch.testing.assert_close(kl_divergence(p, p), torch.zeros((), dtype=torch.float64))
