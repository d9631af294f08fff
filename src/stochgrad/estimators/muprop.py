"""MuProp: the first-order Taylor expansion of ``f`` around the mean as a control variate.

With z̄ = stop_grad(E_q[z]) and h(z) = f(z̄) + ∇f(z̄)ᵀ(z − z̄), E_q[h] is known in closed form, so

    ĝ = ∇f(z) + (f(z) − h(z)) ∇log q(z) + ∇f(z̄)ᵀ ∇E_q[z]

is unbiased for ∇E_q[f(z)] (Gu, Levine, Sutskever & Mnih, 2016, "MuProp"). As in the paper,
the residual f(z) − h(z) can be centred further by a baseline (any
:class:`~stochgrad.estimators.ScoreFunctionEstimator`): for Bernoulli latents the Taylor line
through the mean misses f on {0, 1} by a constant (f(z) − h(z) has mean ≠ 0), which only a
baseline removes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .baselines import ScoreFunctionEstimator
from .surrogate import _check_log_prob_shape, gradient_only

__all__ = ["muprop"]


def muprop(
    f: Callable[[Tensor], Tensor],
    distribution: Distribution,
    sample: Tensor | None = None,
    baseline: ScoreFunctionEstimator | None = None,
    context: Any = None,
) -> Tensor:
    """MuProp surrogate of value f(z), z ~ q, with a first-order Taylor control variate.

    ĝ = ∇f(z) + (f(z) − f(z̄) − ∇f(z̄)ᵀ(z − z̄)) ∇log q(z) + ∇f(z̄)ᵀ ∇E_q[z], z̄ = stop_grad(E_q z)
    (Gu et al., 2016).

    Args:
        f: differentiable on the support's convex hull (it is evaluated at the mean);
            maps ``z`` to a cost of the shape of ``distribution.log_prob(z)``, and must treat
            the batch elements independently.
        distribution: any torch distribution with ``mean`` and ``log_prob``; wrap factorised
            latents in ``torch.distributions.Independent`` so ``log_prob`` sums over them.
        sample: a sample of ``distribution`` to use; drawn with ``distribution.sample()`` if None.
        baseline: centres the residual f(z) − h(z) further (e.g.
            :class:`~stochgrad.estimators.MovingAverageBaseline`); ``None`` for none.
        context: passed to ``baseline`` (for input-dependent baselines).

    Example::

        >>> from stochgrad.estimators import MovingAverageBaseline
        >>> logits = torch.zeros(4, 10, requires_grad=True)
        >>> q = torch.distributions.Independent(torch.distributions.Bernoulli(logits=logits), 1)
        >>> cost = lambda z: (z - 0.45).square().sum(-1)
        >>> surrogate = muprop(cost, q, baseline=MovingAverageBaseline())
        >>> surrogate.sum().backward()
        >>> logits.grad.shape
        torch.Size([4, 10])
    """
    z = distribution.sample() if sample is None else sample.detach()
    cost = f(z)
    log_prob = distribution.log_prob(z)
    _check_log_prob_shape(cost, log_prob)
    mean = distribution.mean
    expansion_point = mean.detach().requires_grad_(True)
    with torch.enable_grad():
        cost_at_mean = f(expansion_point)
        (slope,) = torch.autograd.grad(cost_at_mean.sum(), expansion_point)
    event_dims = tuple(range(-len(distribution.event_shape), 0))

    def sum_event(x: Tensor) -> Tensor:
        return x.sum(event_dims) if event_dims else x

    taylor = cost_at_mean.detach() + sum_event(slope * (z - expansion_point.detach()))
    mean_term = sum_event(slope * mean)
    residual = cost.detach() - taylor
    if baseline is None:
        score_term = residual * log_prob
    else:
        score_term = baseline(residual, log_prob, context)
    return cost + gradient_only(score_term + mean_term)
