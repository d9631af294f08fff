"""ARM and DisARM: antithetic, unbiased gradient estimators for factorised Bernoulli latents.

For ``b ~ Bernoulli(σ(α))`` with independent coordinates, both draw one uniform vector ``u`` and
evaluate ``f`` at the antithetic pair b = 1[u < σ(α)], b̃ = 1[1 − u < σ(α)] = 1[u > σ(−α)],
each of law Bernoulli(σ(α)):

- ARM (Yin & Zhou, 2019, eq. 5): ĝ_i = (f(b̃) − f(b)) (u_i − ½);
- DisARM (Dong, Mnih & Tucker, 2020): ĝ_i = ½ (f(b) − f(b̃)) (−1)^{b̃_i} 1[b_i ≠ b̃_i] σ(|α_i|),
  ARM Rao-Blackwellised over u given (b, b̃).

The surrogate's value ½ (f(b) + f(b̃)) is an unbiased estimate of E f(b) that also carries any
pathwise gradient of ``f`` (e.g. through decoder weights or ``−log q``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .base import BernoulliEstimator, Cost, sum_rightmost
from .surrogate import gradient_only

__all__ = ["ARM", "DisARM"]


class _Antithetic(BernoulliEstimator):
    def _weight(self, logits: Tensor, u: Tensor, b: Tensor, b_tilde: Tensor) -> Tensor:
        raise NotImplementedError

    def _surrogate(
        self, f: Cost, distribution: Distribution, sample_shape: torch.Size, context: Any
    ) -> Tensor:
        """½ (f(b) + f(b̃)) in value, gradient Σ_i ½ (f(b) − f(b̃)) weight_i(u, b, b̃) ∂α_i."""
        logits, event_dims = self._logits(distribution)
        shape = sample_shape + distribution.batch_shape
        u = torch.rand(sample_shape + logits.shape, dtype=logits.dtype, device=logits.device)
        prob = torch.sigmoid(logits.detach())
        b = (u < prob).to(logits.dtype)
        b_tilde = (1.0 - u < prob).to(logits.dtype)
        cost, cost_tilde = self._cost(f, b, shape), self._cost(f, b_tilde, shape)
        half_difference = 0.5 * (cost - cost_tilde).detach()
        half_difference = half_difference.reshape(half_difference.shape + (1,) * event_dims)
        score = sum_rightmost(
            half_difference * self._weight(logits, u, b, b_tilde) * logits, event_dims
        )
        return 0.5 * (cost + cost_tilde) + gradient_only(score)


class ARM(_Antithetic):
    """ARM estimator of ∇_α E_{b ~ Bernoulli(σ(α))}[f(b)] (Yin & Zhou, 2019).

    ĝ_i = (f(1[u > σ(−α)]) − f(1[u < σ(α)])) (u_i − ½), u ~ U(0, 1)^d; two evaluations of ``f``
    per sample. Supports ``Bernoulli`` and ``Independent(Bernoulli)``.

    Args:
        n_samples: antithetic pairs per batch element.

    Example::

        >>> from torch.distributions import Bernoulli, Independent
        >>> logits = torch.zeros(10, requires_grad=True)
        >>> q = Independent(Bernoulli(logits=logits), 1)
        >>> surrogate = ARM()(lambda b: (b - 0.45).square().sum(-1), q)
        >>> surrogate.backward()
        >>> logits.grad.shape
        torch.Size([10])
    """

    def _weight(self, logits: Tensor, u: Tensor, b: Tensor, b_tilde: Tensor) -> Tensor:
        # (f(b̃) − f(b)) (u − ½) = ½ (f(b) − f(b̃)) (1 − 2u).
        return 1.0 - 2.0 * u


class DisARM(_Antithetic):
    """DisARM estimator of ∇_α E_{b ~ Bernoulli(σ(α))}[f(b)] (Dong, Mnih & Tucker, 2020).

    ĝ_i = ½ (f(b) − f(b̃)) (−1)^{b̃_i} 1[b_i ≠ b̃_i] σ(|α_i|), b = 1[u < σ(α)], b̃ = 1[1−u < σ(α)].
    Supports ``Bernoulli`` and ``Independent(Bernoulli)``.

    Args:
        n_samples: antithetic pairs per batch element.

    Example::

        >>> from torch.distributions import Bernoulli, Independent
        >>> logits = torch.zeros(3, 10, requires_grad=True)
        >>> q = Independent(Bernoulli(logits=logits), 1)
        >>> surrogate = DisARM()(lambda b: (b - 0.45).square().sum(-1), q)
        >>> surrogate.shape
        torch.Size([3])
        >>> surrogate.sum().backward()
        >>> logits.grad.shape
        torch.Size([3, 10])
    """

    def _weight(self, logits: Tensor, u: Tensor, b: Tensor, b_tilde: Tensor) -> Tensor:
        sign = 1.0 - 2.0 * b_tilde
        return sign * (b != b_tilde).to(b.dtype) * torch.sigmoid(logits.detach().abs())
