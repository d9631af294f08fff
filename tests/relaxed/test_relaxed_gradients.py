"""Pathwise gradients of the relaxed families against finite differences with common random numbers.

With the seed fixed, ``F(theta) = mean_i f(rsample_i(theta))`` is a deterministic function of the
parameters, so autograd's gradient must equal its central finite difference to rounding error.
The surrogate (straight-through) gradients are checked against their documented means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch

import stochgrad.relaxed as relaxed

NUM_DRAWS = 200
STEP = 1e-6


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


SUPPORT = t(0.0, 1.0, 3.0)


def _correlation(rho: torch.Tensor) -> torch.Tensor:
    off = rho.reshape(1, 1) * torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=rho.dtype)
    return torch.eye(2, dtype=rho.dtype) + off


@dataclass
class Pathwise:
    name: str
    make: Callable[..., torch.distributions.Distribution]
    params: dict[str, torch.Tensor]
    draw: Callable = field(default=lambda dist, n: dist.rsample((n,)))


PATHWISE = [
    Pathwise(
        "GaussianRelaxedBernoulli",
        relaxed.GaussianRelaxedBernoulli,
        {"loc": t(0.2, 0.6), "scale": t(0.5, 0.3)},
    ),
    Pathwise(
        "CorrelatedRelaxedBernoulli",
        lambda pi, rho, tau: relaxed.CorrelatedRelaxedBernoulli(pi, _correlation(rho), tau),
        {"pi": t(0.3, 0.6), "rho": t(0.5), "tau": t(0.8)},
    ),
    Pathwise(
        "GumbelSoftmaxTopK",
        lambda logits, tau: relaxed.GumbelSoftmaxTopK(logits, 2, tau),
        {"logits": t(0.1, -0.3, 0.5, 0.0), "tau": t(0.7)},
    ),
    Pathwise(
        "InvertibleGaussian",
        relaxed.InvertibleGaussian,
        {"loc": t(0.3, -0.2), "scale": t(0.8, 1.1), "temperature": t(0.7)},
    ),
    Pathwise(
        "HardConcrete",
        relaxed.HardConcrete,
        {"alpha": t(0.5, 2.0), "beta": t(0.6, 0.9), "xi": t(1.1, 1.2), "gamma": t(-0.1, -0.2)},
    ),
    Pathwise(
        "LogisticNormalSoftmax",
        relaxed.LogisticNormalSoftmax,
        {"loc": t(0.2, -0.4, 0.1), "scale": t(0.7, 1.0, 1.3)},
    ),
    Pathwise(
        "GeneralizedGumbelSoftmax",
        lambda logits, tau: relaxed.GeneralizedGumbelSoftmax(SUPPORT, logits=logits, tau=tau),
        {"logits": t(0.1, -0.3, 0.5), "tau": t(0.8)},
    ),
    Pathwise(
        "GeneralizedGumbelSoftmax-Poisson-value",
        lambda rate, tau: relaxed.GeneralizedGumbelSoftmax.from_distribution(
            torch.distributions.Poisson(rate), num_values=15, tau=tau
        ),
        {"rate": t(3.0), "tau": t(0.5)},
        draw=lambda dist, n: dist.rsample_value((n,)),
    ),
    Pathwise(
        "RebarRelaxation", relaxed.RebarRelaxation, {"theta": t(0.3, 0.7), "lambd": t(0.5, 1.0)}
    ),
    Pathwise(
        "RebarRelaxation-conditional",
        relaxed.RebarRelaxation,
        {"theta": t(0.3, 0.7), "lambd": t(0.5, 1.0)},
        # The hard draws are held fixed: the conditional relaxation is differentiable given them.
        draw=lambda dist, n: dist.conditional_rsample(
            (torch.arange(n * 2, dtype=torch.float64).reshape(n, 2) % 3 == 0).double()
        ),
    ),
    Pathwise(
        "RelaxedBernoulli",
        lambda temperature, logits: relaxed.RelaxedBernoulli(temperature, logits=logits),
        {"temperature": t(0.6), "logits": t(-0.5, 1.0)},
    ),
    Pathwise(
        "RelaxedOneHotCategorical",
        lambda temperature, logits: relaxed.RelaxedOneHotCategorical(temperature, logits=logits),
        {"temperature": t(0.6), "logits": t(-0.5, 1.0, 0.2)},
    ),
]


def _objective(example: Pathwise, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """``mean_i f(z_i)`` over NUM_DRAWS draws with seed 0 (the common random numbers)."""
    torch.manual_seed(0)
    z = example.draw(example.make(**params), NUM_DRAWS)
    weights = torch.linspace(-1, 1, z[0].numel(), dtype=z.dtype).reshape(z[0].shape)
    return (weights * z + z**2).sum(tuple(range(1, z.dim()))).mean()


def _gradients(example: Pathwise) -> tuple[dict, dict]:
    """Autograd and central finite-difference gradients of the objective, per parameter."""
    params = {k: v.clone().requires_grad_(True) for k, v in example.params.items()}
    objective = _objective(example, params)
    autograd = dict(zip(params, torch.autograd.grad(objective, list(params.values())), strict=True))
    finite_difference = {}
    for name, value in example.params.items():
        estimate = torch.zeros_like(value)
        for index in range(value.numel()):
            shift = torch.zeros_like(value).view(-1)
            shift[index] = STEP
            shift = shift.view(value.shape)
            up = _objective(example, {**example.params, name: value + shift})
            down = _objective(example, {**example.params, name: value - shift})
            estimate.view(-1)[index] = (up - down) / (2 * STEP)
        finite_difference[name] = estimate
    return autograd, finite_difference


def _assert_gradients_match(autograd: dict, finite_difference: dict) -> None:
    for name in autograd:
        # Central differences with STEP = 1e-6 in float64 are accurate to about 1e-8.
        torch.testing.assert_close(
            autograd[name], finite_difference[name], rtol=1e-5, atol=1e-7, msg=name
        )


@pytest.mark.parametrize("example", PATHWISE, ids=[e.name for e in PATHWISE])
def test_pathwise_gradient_matches_finite_difference(example):
    autograd, finite_difference = _gradients(example)
    assert all(g.abs().sum() > 0 for g in autograd.values())
    _assert_gradients_match(autograd, finite_difference)


@pytest.mark.parametrize("example", PATHWISE[:3], ids=[e.name for e in PATHWISE[:3]])
def test_pathwise_gradient_twin_fails_when_scaled(example):
    autograd, finite_difference = _gradients(example)
    scaled = {name: 1.1 * grad for name, grad in autograd.items()}
    with pytest.raises(AssertionError):
        _assert_gradients_match(scaled, finite_difference)


# ------------------------------------------------------------------------ surrogate gradients


def test_straight_through_bernoulli_gradient_is_identity():
    probs = t(0.2, 0.5, 0.9).requires_grad_(True)
    relaxed.StraightThroughBernoulli(probs).rsample((7,)).sum().backward()
    torch.testing.assert_close(probs.grad, torch.full_like(probs, 7.0))


def _stochastic_times_smooth_gradients(probability: float) -> torch.Tensor:
    """One d rsample / d probs per draw, for 20,000 draws with seed 0."""
    torch.manual_seed(0)
    probs = torch.full((20_000,), probability, dtype=torch.float64, requires_grad=True)
    draws = relaxed.StochasticTimesSmooth(probs).rsample()
    (grads,) = torch.autograd.grad(draws.sum(), probs)
    return grads


def _within_five_standard_errors(samples: torch.Tensor, expected: float) -> bool:
    standard_error = samples.std() / len(samples) ** 0.5
    return abs(samples.mean().item() - expected) < 5 * standard_error.item()


@pytest.mark.parametrize("probability", [0.2, 0.6])
def test_stochastic_times_smooth_gradient_has_bengio_mean(probability):
    """Bengio's surrogate d(g sqrt p)/dp = g / (2 sqrt p), g ~ Bernoulli(sqrt p), has mean 1/2."""
    assert _within_five_standard_errors(_stochastic_times_smooth_gradients(probability), 0.5)


@pytest.mark.parametrize("probability", [0.2, 0.6])
def test_stochastic_times_smooth_gradient_twin_rejects_unbiased_value(probability):
    """The same check rejects dE[b]/dp = 1: the surrogate is biased, as documented."""
    assert not _within_five_standard_errors(_stochastic_times_smooth_gradients(probability), 1.0)
