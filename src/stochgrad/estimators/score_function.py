"""Score-function estimators: REINFORCE with an optional baseline, and MuProp.

REINFORCE (Williams, 1992): ∇ E f(z) = E[∇f(z) + (f(z) − b) ∇log q(z)] for any baseline ``b``
that does not depend on the sample z. MuProp (Gu, Levine, Sutskever & Mnih, 2016) subtracts the
first-order Taylor expansion h(z) = f(z̄) + ∇f(z̄)ᵀ(z − z̄) around z̄ = stop_grad(E_q z) and adds
back its known expectation:

    ĝ = ∇f(z) + (f(z) − h(z)) ∇log q(z) + ∇f(z̄)ᵀ ∇E_q[z].

As in the paper, MuProp's residual f(z) − h(z) can be centred further by a baseline: for
Bernoulli latents the Taylor line through the mean misses f on {0, 1} by a constant.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .base import Cost, Estimator, sum_rightmost
from .baselines import Baseline
from .surrogate import gradient_only, score_function_surrogate

__all__ = ["MuProp", "Reinforce"]


def _baseline_surrogate(
    baseline: Baseline | None, cost: Tensor, log_prob: Tensor, sample_dims: int, context: Any
) -> Tensor:
    """``baseline(cost, log_prob, context)`` with the sample dimension moved last (batch first)."""
    if baseline is None:
        return score_function_surrogate(cost, log_prob)
    if sample_dims == 0:
        return baseline(cost, log_prob, context)
    log_prob = log_prob.expand_as(cost)
    return baseline(cost.movedim(0, -1), log_prob.movedim(0, -1), context).movedim(-1, 0)


class _ScoreFunction(Estimator):
    def __init__(self, baseline: Baseline | None = None, n_samples: int = 1) -> None:
        super().__init__(n_samples)
        if baseline is not None and not isinstance(baseline, Baseline):
            raise TypeError(
                "baseline must be a stochgrad.estimators.Baseline (MovingAverageBaseline, "
                f"NVILBaseline, LeaveOneOutBaseline) or None, got {type(baseline).__name__}"
            )
        self.baseline = baseline

    def forward(
        self,
        f: Cost,
        distribution: Distribution,
        context: Any = None,
        *,
        n_samples: int | None = None,
    ) -> Tensor:
        needed = 1 if self.baseline is None else self.baseline.min_samples
        if (self.n_samples if n_samples is None else n_samples) < needed:
            raise ValueError(
                f"{type(self.baseline).__name__} needs n_samples >= {needed}, got "
                f"{self.n_samples if n_samples is None else n_samples}"
            )
        return super().forward(f, distribution, context, n_samples=n_samples)


class Reinforce(_ScoreFunction):
    """REINFORCE: ∇ = ∇f(z) + (f(z) − b) ∇log q(z), z ~ q, for any distribution (Williams, 1992).

    Args:
        baseline: the control variate b (:class:`MovingAverageBaseline`, :class:`NVILBaseline`,
            :class:`LeaveOneOutBaseline` with ``n_samples >= 2``); ``None`` for b = 0.
        n_samples: samples per batch element.

    Example::

        >>> from torch.distributions import Bernoulli, Independent
        >>> from stochgrad.estimators import LeaveOneOutBaseline
        >>> logits = torch.zeros(4, 10, requires_grad=True)
        >>> q = Independent(Bernoulli(logits=logits), 1)
        >>> estimator = Reinforce(LeaveOneOutBaseline(), n_samples=3)
        >>> surrogate = estimator(lambda b: (b - 0.45).square().sum(-1), q)
        >>> surrogate.shape
        torch.Size([4])
        >>> surrogate.mean().backward()
        >>> logits.grad.shape
        torch.Size([4, 10])
    """

    def _surrogate(
        self, f: Cost, distribution: Distribution, sample_shape: torch.Size, context: Any
    ) -> Tensor:
        z = distribution.sample(sample_shape)
        cost = self._cost(f, z, sample_shape + distribution.batch_shape)
        log_prob = distribution.log_prob(z)
        return _baseline_surrogate(self.baseline, cost, log_prob, len(sample_shape), context)


class MuProp(_ScoreFunction):
    """MuProp: a first-order Taylor control variate around the mean (Gu et al., 2016).

    ĝ = ∇f(z) + (f(z) − f(z̄) − ∇f(z̄)ᵀ(z − z̄) − b) ∇log q(z) + ∇f(z̄)ᵀ ∇E_q[z],
    z̄ = stop_grad(E_q z). ``f`` is also evaluated at the mean (shape ``batch_shape +
    event_shape``, no sample dimension), so it must be differentiable on the support's convex
    hull. Needs a distribution with ``mean``.

    Args:
        baseline: centres the residual f(z) − h(z) further (e.g. :class:`MovingAverageBaseline`).
        n_samples: samples per batch element.

    Example::

        >>> from torch.distributions import Bernoulli, Independent
        >>> from stochgrad.estimators import MovingAverageBaseline
        >>> logits = torch.zeros(4, 10, requires_grad=True)
        >>> q = Independent(Bernoulli(logits=logits), 1)
        >>> estimator = MuProp(baseline=MovingAverageBaseline())
        >>> estimator(lambda z: (z - 0.45).square().sum(-1), q).sum().backward()
        >>> logits.grad.shape
        torch.Size([4, 10])
    """

    supported = "distributions with a mean (torch.distributions with mean and log_prob)"

    def supports(self, distribution: Distribution) -> bool:
        if not isinstance(distribution, Distribution):
            return False
        try:
            distribution.mean  # noqa: B018 (probing for NotImplementedError)
        except NotImplementedError:
            return False
        return True

    def _surrogate(
        self, f: Cost, distribution: Distribution, sample_shape: torch.Size, context: Any
    ) -> Tensor:
        batch_shape = distribution.batch_shape
        z = distribution.sample(sample_shape)
        cost = self._cost(f, z, sample_shape + batch_shape)
        log_prob = distribution.log_prob(z)
        mean = distribution.mean
        expansion_point = mean.detach().requires_grad_(True)
        with torch.enable_grad():
            cost_at_mean = self._cost(f, expansion_point, batch_shape)
            (slope,) = torch.autograd.grad(cost_at_mean.sum(), expansion_point)
        event_dims = len(distribution.event_shape)
        taylor = cost_at_mean.detach() + sum_rightmost(
            slope * (z - expansion_point.detach()), event_dims
        )
        mean_term = sum_rightmost(slope * mean, event_dims)
        residual = cost.detach() - taylor
        score_term = _baseline_surrogate(
            self.baseline, residual, log_prob, len(sample_shape), context
        )
        return cost + gradient_only(score_term + mean_term)
