"""Family-specific properties: KL divergences, the Laplace bridge, REBAR's conditional relaxation,
top-k and generalized Gumbel-softmax details.

Monte Carlo checks fix seed 0 and 20,000 draws and accept within 5 standard errors; each has a
twin that fails on a wrong answer.
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from torch.distributions import Dirichlet, Normal, kl_divergence

import stochgrad.kl  # noqa: F401  (registers the KL divergences)
import stochgrad.relaxed as relaxed

NUM_SAMPLES = 20_000


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ------------------------------------------------------------------------------------------- KL

KL_PAIRS = [
    (
        "InvertibleGaussian",
        lambda: relaxed.InvertibleGaussian(t(0.3, -0.2), t(0.8, 1.1), 0.7),
        lambda: relaxed.InvertibleGaussian(t(-0.1, 0.4), t(1.0, 0.6), 0.7),
    ),
    (
        "InvertibleGaussian_unequal_temperatures",
        lambda: relaxed.InvertibleGaussian(t(0.3, -0.2), t(0.8, 1.1), 0.7),
        lambda: relaxed.InvertibleGaussian(t(-0.1, 0.4), t(1.0, 0.6), 0.4),
    ),
    (
        "InvertibleGaussian_unequal_temperatures_and_deltas",
        lambda: relaxed.InvertibleGaussian(t(0.3, -0.2, 0.5), t(0.8, 1.1, 0.5), 1.3, 0.5),
        lambda: relaxed.InvertibleGaussian(t(-0.1, 0.4, 0.0), t(1.0, 0.6, 0.9), 0.6, 2.0),
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


def test_igr_kl_at_unequal_temperatures_is_not_the_kl_of_the_gaussians():
    # It raised NotImplementedError. Same Gaussians, different temperatures: the laws differ, so
    # the KL is positive (the Monte Carlo pairs above check its value), unlike the Gaussians' 0.
    p = relaxed.InvertibleGaussian(t(0.3), t(0.8), t(0.7))
    q = relaxed.InvertibleGaussian(t(0.3), t(0.8), t(0.5))
    kl = kl_divergence(p, q)
    assert kl.shape == p.batch_shape and (kl > 0.05).all()
    gaussians = kl_divergence(Normal(p.loc, p.scale), Normal(q.loc, q.scale)).sum(-1)
    assert not _kl_within_five_standard_errors(p, q, gaussians)


# ------------------------------------------------------------------------------- Laplace bridge


def test_laplace_bridge_round_trip_is_exact():
    concentration = t([0.5, 2.0, 7.0], [3.0, 3.0, 3.0])
    logistic_normal = relaxed.lognorm_approximation(Dirichlet(concentration))
    assert logistic_normal.batch_shape == (2,) and logistic_normal.event_shape == (3,)
    back = relaxed.dirichlet_approximation(logistic_normal)
    torch.testing.assert_close(back.concentration, concentration)


def test_laplace_bridge_mode_is_the_dirichlet_mean():
    """In the softmax basis the Dirichlet's mode maps to a / sum(a) (Hobbhahn et al., 2022)."""
    concentration = t(0.5, 2.0, 7.0)
    logistic_normal = relaxed.lognorm_approximation(Dirichlet(concentration))
    torch.testing.assert_close(
        torch.softmax(logistic_normal.loc, -1), concentration / concentration.sum()
    )


def test_laplace_bridge_scale_is_a_standard_deviation():
    """relaxit 1.2.1 passes the variance as ``scale``; here scale**2 is the paper's variance."""
    concentration = t(0.5, 2.0, 7.0)
    scale = relaxed.lognorm_approximation(Dirichlet(concentration)).scale
    inverse = 1 / concentration
    variance = (1 - 2 / 3) * inverse + inverse.sum() / 9
    torch.testing.assert_close(scale**2, variance)


# ------------------------------------------------------------------------------------ REBAR


def test_rebar_conditional_agrees_with_the_hard_draw():
    torch.manual_seed(0)
    draw = relaxed.RebarRelaxation(t(0.3, 0.7), t(0.5, 1.0)).rsample_rebar((1000,))
    assert torch.equal((draw.conditional > 0.5).double(), draw.hard)
    assert torch.equal((draw.relaxed > 0.5).double(), draw.hard)


def _conditional_ks_p_value(theta: float) -> float:
    """KS test of REBAR's conditional draws against the binary concrete CDF with ``theta``.

    Averaged over b ~ Bernoulli(theta), z~ | b has the law of z, so sigmoid(z~ / lambd) must be
    binary concrete: F(r) = sigmoid(lambd logit r - logit theta).
    """
    torch.manual_seed(0)
    lambd = 0.7
    draw = relaxed.RebarRelaxation(t(0.3), t(lambd)).rsample_rebar((NUM_SAMPLES,))
    logit_theta = torch.logit(t(theta)).item()
    values = draw.conditional.squeeze(-1).numpy()

    def cdf(r):
        return stats.logistic.cdf(lambd * (stats.logistic.ppf(r)) - logit_theta)

    return stats.kstest(values, cdf).pvalue


def test_rebar_conditional_has_the_law_of_the_relaxed_sample():
    assert _conditional_ks_p_value(0.3) > 1e-6


def test_rebar_conditional_twin_rejects_a_wrong_law():
    assert _conditional_ks_p_value(0.33) < 1e-6


def _naive_conditional(theta: torch.Tensor, hard: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """REBAR's conditional with u~ formed in probability space (1 - u~ can round to 0)."""
    u = torch.where(hard > 0.5, 1 - theta + theta * v, (1 - theta) * v)
    return torch.sigmoid((torch.logit(theta) + u.log() - (-u).log1p()) / 0.5)


def _float32_conditional_gradient(conditional) -> torch.Tensor:
    """d/dtheta of 200,000 float32 conditional draws given hard = 1 at theta = 1e-3 (seed 0)."""
    torch.manual_seed(0)
    theta = torch.full((200_000,), 1e-3, requires_grad=True)
    hard = torch.ones(200_000)
    (grad,) = torch.autograd.grad(conditional(theta, hard).sum(), theta)
    return grad


def test_rebar_conditional_gradient_is_finite_in_float32():
    grad = _float32_conditional_gradient(
        lambda theta, hard: relaxed.RebarRelaxation(theta, 0.5).conditional_rsample(hard)
    )
    assert torch.isfinite(grad).all()


def test_rebar_conditional_float32_twin_fails_in_probability_space():
    grad = _float32_conditional_gradient(
        lambda theta, hard: _naive_conditional(theta, hard, torch.rand(theta.shape).clamp(1e-7))
    )
    assert not torch.isfinite(grad).all()


# ----------------------------------------------------------------------- top-k and GenGS details


def test_topk_soft_sample_is_a_relaxed_k_hot():
    torch.manual_seed(0)
    sample = relaxed.GumbelSoftmaxTopK(torch.randn(3, 6, dtype=torch.float64), 3, 0.4).rsample(
        (50,)
    )
    torch.testing.assert_close(sample.sum(-1), torch.full((50, 3), 3.0, dtype=torch.float64))
    assert (sample >= 0).all()


def test_topk_soft_has_no_density():
    with pytest.raises(NotImplementedError, match="hard=True"):
        relaxed.GumbelSoftmaxTopK(t(0.0, 1.0, 2.0), 2, 0.5).log_prob(t(1.0, 1.0, 0.0))


def test_generalized_gumbel_truncation_keeps_the_tail_mass():
    rate = t(3.0, 6.0)
    dist = relaxed.GeneralizedGumbelSoftmax.from_distribution(
        torch.distributions.Poisson(rate), num_values=10
    )
    assert dist.batch_shape == (2,) and dist.event_shape == (10,)
    tail = 1 - torch.tensor(
        [stats.poisson.cdf(8, 3.0), stats.poisson.cdf(8, 6.0)], dtype=torch.float64
    )
    torch.testing.assert_close(dist.probs[:, -1], tail)
    torch.testing.assert_close(dist.probs.sum(-1), torch.ones(2, dtype=torch.float64))


def test_generalized_gumbel_value_is_the_projection_of_the_weights():
    dist = relaxed.GeneralizedGumbelSoftmax(t(0.0, 1.0, 3.0), logits=t(0.1, -0.3, 0.5), tau=0.5)
    torch.manual_seed(0)
    weights = dist.rsample((5,))
    torch.manual_seed(0)
    torch.testing.assert_close(dist.rsample_value((5,)), weights @ t(0.0, 1.0, 3.0))


def test_igr_event_shape_has_one_more_category():
    dist = relaxed.InvertibleGaussian(torch.zeros(2, 4), torch.ones(2, 4), 0.5)
    assert dist.batch_shape == (2,) and dist.event_shape == (5,)
    assert dist.log_prob(dist.rsample((3,))).shape == (3, 2)
