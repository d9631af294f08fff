"""Zero-temperature limits: relaxed samples approach draws of the discrete law they relax.

Each example draws NUM_SAMPLES relaxed samples (seed 0) at a small temperature, rounds them to
the discrete outcome, and compares outcome frequencies with the discrete law computed
independently of the sampler (closed forms, scipy, or the exact subset probability). Accepts at
chi-square p-value > 1e-6 (about 5 standard errors); each has a twin with a perturbed law.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from scipy import integrate, stats

import stochgrad.relaxed as relaxed

NUM_SAMPLES = 20_000
P_VALUE_FLOOR = 1e-6
COLD = 1e-4  # temperature of the limit tests


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def s(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def _binary_outcome(samples: torch.Tensor) -> torch.Tensor:
    return (samples > 0.5).long()


def _argmax_outcome(samples: torch.Tensor) -> torch.Tensor:
    return samples.argmax(-1)


def _joint_binary_outcome(samples: torch.Tensor) -> torch.Tensor:
    bits = (samples > 0.5).long()
    return bits[..., 0] * 2 + bits[..., 1]


def _correlated_law(pi: list[float], rho: float) -> list[float]:
    """P(b1, b2) for b_k = 1[v_k > Phi^-1(1 - pi_k)], v ~ N(0, [[1, rho], [rho, 1]])."""
    thresholds = [stats.norm.ppf(1 - p) for p in pi]
    both = stats.multivariate_normal(cov=[[1, rho], [rho, 1]]).cdf([-thresholds[0], -thresholds[1]])
    only_second = pi[1] - both
    only_first = pi[0] - both
    return [1 - both - only_first - only_second, only_second, only_first, both]


def _igr_law(loc: list[float], scale: list[float]) -> list[float]:
    """P(argmax [y1, y2, 0] = k) for independent y_i ~ N(loc_i, scale_i^2) (delta = 1)."""
    (m1, m2), (s1, s2) = loc, scale
    last = stats.norm.cdf(-m1 / s1) * stats.norm.cdf(-m2 / s2)
    first = integrate.quad(
        lambda y: stats.norm.pdf(y, m1, s1) * stats.norm.cdf((y - m2) / s2), 0, float("inf")
    )[0]
    return [first, 1 - first - last, last]


def _subset_law(logits: list[float], k: int) -> list[float]:
    """P(S) of sampling k items without replacement, summing over orderings (itertools)."""
    probs = torch.softmax(t(*logits), -1).tolist()
    law = []
    for subset in itertools.combinations(range(len(probs)), k):
        total = 0.0
        for order in itertools.permutations(subset):
            term, used = 1.0, 0.0
            for item in order:
                term *= probs[item] / (1 - used)
                used += probs[item]
            total += term
        law.append(total)
    return law


def _subset_outcome(samples: torch.Tensor, n: int, k: int) -> torch.Tensor:
    subsets = list(itertools.combinations(range(n), k))
    index = {subset: i for i, subset in enumerate(subsets)}
    chosen = samples.topk(k, dim=-1).indices.sort(-1).values
    return torch.tensor([index[tuple(row)] for row in chosen.tolist()])


@dataclass
class Limit:
    name: str
    make: Callable[[torch.Tensor], torch.distributions.Distribution]  # temperature -> law
    outcome: Callable[[torch.Tensor], torch.Tensor]
    law: list[float]
    wrong_law: list[float]
    # The largest distance of a cold sample to its discrete outcome, for most draws.
    near: Callable[[torch.Tensor], torch.Tensor] = lambda x: torch.minimum(x, 1 - x)


def _shift(law: list[float], amount: float = 0.03) -> list[float]:
    """A slightly different law: move ``amount`` of mass from the first outcome to the last."""
    return [law[0] - amount, *law[1:-1], law[-1] + amount]


def _one_hot_distance(x: torch.Tensor) -> torch.Tensor:
    return 1 - x.max(-1).values


CORRELATED_LAW = _correlated_law([0.3, 0.6], 0.5)
IGR_LAW = _igr_law([0.3, -0.2], [0.8, 1.1])
CATEGORICAL_LAW = torch.softmax(t(0.1, -0.3, 0.5), -1).tolist()
SUBSET_LAW = _subset_law([0.1, -0.3, 0.5, 0.0], 2)

LIMITS = [
    Limit(
        "RebarRelaxation",
        lambda temperature: relaxed.RebarRelaxation(s(0.3), temperature),
        _binary_outcome,
        [0.7, 0.3],
        [0.67, 0.33],
    ),
    Limit(
        "HardConcrete",
        lambda temperature: relaxed.HardConcrete(s(1.5), temperature),
        _binary_outcome,
        [1 / 2.5, 1.5 / 2.5],
        _shift([1 / 2.5, 1.5 / 2.5]),
    ),
    Limit(
        "RelaxedBernoulli",
        lambda temperature: relaxed.RelaxedBernoulli(temperature, probs=s(0.3)),
        _binary_outcome,
        [0.7, 0.3],
        [0.67, 0.33],
    ),
    Limit(
        "CorrelatedRelaxedBernoulli",
        lambda temperature: relaxed.CorrelatedRelaxedBernoulli(
            t(0.3, 0.6), t([1.0, 0.5], [0.5, 1.0]), temperature
        ),
        _joint_binary_outcome,
        CORRELATED_LAW,
        # Same marginals, correlation 0.3 instead of 0.5: only the copula differs.
        _correlated_law([0.3, 0.6], 0.3),
        near=lambda x: torch.minimum(x, 1 - x).max(-1).values,
    ),
    Limit(
        "InvertibleGaussian",
        lambda temperature: relaxed.InvertibleGaussian(t(0.3, -0.2), t(0.8, 1.1), temperature),
        _argmax_outcome,
        IGR_LAW,
        _shift(IGR_LAW),
        near=_one_hot_distance,
    ),
    Limit(
        "GeneralizedGumbelSoftmax",
        lambda temperature: relaxed.GeneralizedGumbelSoftmax(
            t(0.0, 1.0, 3.0), logits=t(0.1, -0.3, 0.5), tau=temperature
        ),
        _argmax_outcome,
        CATEGORICAL_LAW,
        _shift(CATEGORICAL_LAW),
        near=_one_hot_distance,
    ),
    Limit(
        "RelaxedOneHotCategorical",
        lambda temperature: relaxed.RelaxedOneHotCategorical(temperature, logits=t(0.1, -0.3, 0.5)),
        _argmax_outcome,
        CATEGORICAL_LAW,
        _shift(CATEGORICAL_LAW),
        near=_one_hot_distance,
    ),
    Limit(
        "GumbelSoftmaxTopK",
        lambda temperature: relaxed.GumbelSoftmaxTopK(t(0.1, -0.3, 0.5, 0.0), 2, temperature),
        lambda x: _subset_outcome(x, 4, 2),
        SUBSET_LAW,
        _shift(SUBSET_LAW),
        near=lambda x: torch.minimum(x, 1 - x).max(-1).values,
    ),
]


def _limit_p_value(limit: Limit, law: list[float]) -> float:
    torch.manual_seed(0)
    samples = limit.make(s(COLD)).sample((NUM_SAMPLES,))
    # At temperature 1e-4 nearly every draw is within 1e-2 of a discrete outcome.
    assert (limit.near(samples) < 1e-2).double().mean() > 0.99
    counts = torch.bincount(limit.outcome(samples), minlength=len(law)).double()
    expected = t(*law) * NUM_SAMPLES
    statistic = ((counts - expected) ** 2 / expected).sum().item()
    return float(stats.chi2.sf(statistic, df=len(law) - 1))


@pytest.mark.parametrize("limit", LIMITS, ids=[limit.name for limit in LIMITS])
def test_cold_samples_follow_the_discrete_law(limit):
    assert sum(limit.law) == pytest.approx(1.0)
    assert _limit_p_value(limit, limit.law) > P_VALUE_FLOOR


@pytest.mark.parametrize("limit", LIMITS, ids=[limit.name for limit in LIMITS])
def test_cold_samples_twin_rejects_a_slightly_wrong_law(limit):
    assert _limit_p_value(limit, limit.wrong_law) < P_VALUE_FLOOR


def test_topk_exact_subset_probability_matches_brute_force():
    dist = relaxed.GumbelSoftmaxTopK(t(0.1, -0.3, 0.5, 0.0), 2, 0.5, hard=True)
    subsets = list(itertools.combinations(range(4), 2))
    k_hots = torch.zeros(len(subsets), 4, dtype=torch.float64)
    for row, subset in enumerate(subsets):
        k_hots[row, list(subset)] = 1.0
    torch.testing.assert_close(dist.log_prob(k_hots).exp(), t(*SUBSET_LAW))


def test_gaussian_gate_tends_to_the_clipped_location_as_scale_vanishes():
    """The stochastic gate's noise scale is not a temperature: it tends to clamp(loc, 0, 1)."""
    torch.manual_seed(0)
    loc = t(-0.3, 0.4, 1.7)
    samples = relaxed.GaussianRelaxedBernoulli(loc, 1e-6).sample((1000,))
    torch.testing.assert_close(samples, loc.clamp(0, 1).expand_as(samples), atol=1e-5, rtol=0)


def test_gaussian_gate_atoms_are_normal_tails():
    gate = relaxed.GaussianRelaxedBernoulli(t(0.4), t(0.5))
    zero, one = gate.log_prob(t(0.0, 1.0)).exp()
    assert zero.item() == pytest.approx(stats.norm.cdf(-0.4 / 0.5))
    assert one.item() == pytest.approx(stats.norm.sf(0.6 / 0.5))
    assert gate.expected_l0().item() == pytest.approx(stats.norm.cdf(0.4 / 0.5))


def test_hard_concrete_expected_l0_matches_its_atom_at_zero():
    gate = relaxed.HardConcrete(t(0.5, 2.0), t(0.6, 0.9))
    torch.testing.assert_close(gate.expected_l0(), 1 - gate.log_prob(t(0.0, 0.0)).exp())


@pytest.mark.parametrize("loc, scale", [(0.4, 0.5), (-0.2, 0.3), (1.1, 0.8)])
def test_gaussian_gate_mean_and_variance_match_quadrature(loc, scale):
    """E[z] and Var[z] of clamp(N(loc, scale^2), 0, 1) by scipy quadrature of the normal density."""
    gate = relaxed.GaussianRelaxedBernoulli(s(loc), s(scale))
    top = stats.norm.sf((1 - loc) / scale)
    mean = integrate.quad(lambda x: x * stats.norm.pdf(x, loc, scale), 0, 1)[0] + top
    second = integrate.quad(lambda x: x**2 * stats.norm.pdf(x, loc, scale), 0, 1)[0] + top
    assert gate.mean.item() == pytest.approx(mean, abs=1e-10)
    assert gate.variance.item() == pytest.approx(second - mean**2, abs=1e-10)
