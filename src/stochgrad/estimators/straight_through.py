"""Straight-through and pathwise estimators: the sample itself carries the gradient.

``hard + (soft − stop_grad(soft))`` has the value of the discrete sample and the gradient of
``soft``. The resulting gradient of E f(b) is *biased* (see ``docs/estimators.md`` for the
measured bias); these are cheap, low-variance alternatives to the unbiased estimators. The
samples come from the distributions of :mod:`stochgrad.relaxed`; these classes only choose which
relaxation supplies the gradient. :class:`Pathwise` is plain reparameterization (``rsample``),
so that every loss can take "an estimator" uniformly.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from stochgrad.relaxed import (
    DecoupledStraightThroughGumbelSoftmax,
    RelaxedBernoulli,
    StraightThroughBernoulli,
    StraightThroughOneHotCategorical,
)

from .base import Cost, Estimator, unwrap
from .surrogate import gradient_only

__all__ = ["GumbelStraightThrough", "Pathwise", "StraightThrough"]


class _Discrete(Estimator):
    supported = (
        "Bernoulli, OneHotCategorical, or Independent of them (categories on the last dimension)"
    )

    def supports(self, distribution: Distribution) -> bool:
        return isinstance(unwrap(distribution)[0], (Bernoulli, OneHotCategorical))

    def _sample(self, base: Distribution, sample_shape: torch.Size) -> Tensor:
        raise NotImplementedError

    def _surrogate(
        self, f: Cost, distribution: Distribution, sample_shape: torch.Size, context: Any
    ) -> Tensor:
        base, _ = unwrap(distribution)
        sample = self._sample(base, sample_shape)
        return self._cost(f, sample, sample_shape + distribution.batch_shape)


class StraightThrough(_Discrete):
    """Straight-through estimator (Bengio, Léonard & Courville, 2013): exact discrete samples,
    the gradient of their mean.

    Bernoulli: b ~ Bernoulli(σ(α)) with ∂b/∂α := σ'(α); OneHotCategorical: one-hot y ~ Cat(π)
    with ∂y/∂π := I. Biased.

    Args:
        n_samples: samples per batch element.

    Example::

        >>> from torch.distributions import Bernoulli, Independent
        >>> logits = torch.zeros(4, 5, requires_grad=True)
        >>> q = Independent(Bernoulli(logits=logits), 1)
        >>> StraightThrough()(lambda b: (b - 0.45).square().sum(-1), q).sum().backward()
        >>> logits.grad.shape
        torch.Size([4, 5])
    """

    def _sample(self, base: Distribution, sample_shape: torch.Size) -> Tensor:
        base = cast(Bernoulli | OneHotCategorical, base)
        if isinstance(base, Bernoulli):
            return StraightThroughBernoulli(logits=base.logits, validate_args=False).rsample(
                sample_shape
            )
        return StraightThroughOneHotCategorical(logits=base.logits, validate_args=False).rsample(
            sample_shape
        )


class GumbelStraightThrough(_Discrete):
    """Straight-through Gumbel-softmax (Jang, Gu & Poole, 2017; Maddison, Mnih & Teh, 2017).

    Bernoulli: b = H(z) in value with the gradient of σ(z/λ), z = α + logit(u); OneHotCategorical:
    one-hot argmax_k(α_k + g_k) in value with the gradient of softmax((α + g)/λ), g ~ Gumbel.
    The forward sample is exact; the gradient is biased.

    Args:
        temperature: λ > 0 of the relaxation whose gradient is used.
        n_samples: samples per batch element.

    Example::

        >>> from torch.distributions import OneHotCategorical
        >>> logits = torch.zeros(2, 3, requires_grad=True)
        >>> costs = torch.tensor([1.0, -2.0, 0.5])
        >>> q = OneHotCategorical(logits=logits)
        >>> surrogate = GumbelStraightThrough(temperature=0.5)(lambda y: (y * costs).sum(-1), q)
        >>> surrogate.shape
        torch.Size([2])
    """

    def __init__(self, temperature: float = 1.0, n_samples: int = 1) -> None:
        super().__init__(n_samples)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def _sample(self, base: Distribution, sample_shape: torch.Size) -> Tensor:
        logits: Tensor = cast(Bernoulli | OneHotCategorical, base).logits
        if isinstance(base, Bernoulli):
            temperature = torch.tensor(self.temperature, dtype=logits.dtype, device=logits.device)
            soft = RelaxedBernoulli(temperature, logits=logits, validate_args=False).rsample(
                sample_shape
            )
            return (soft.detach() > 0.5).to(logits.dtype) + gradient_only(soft)
        # Forward temperature 1: the forward draw is Categorical(softmax(logits)) itself.
        return DecoupledStraightThroughGumbelSoftmax(
            logits, tau_forward=1.0, tau_backward=self.temperature, validate_args=False
        ).rsample(sample_shape)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, n_samples={self.n_samples}"


class Pathwise(Estimator):
    """The pathwise (reparameterization) estimator: f(z) with z = ``distribution.rsample()``.

    ∇ E f(z) = E[∇f(g(ε, θ))] (Kingma & Welling, 2014). Supports every distribution with
    ``has_rsample`` (torch's, :mod:`stochgrad.implicit`, :mod:`stochgrad.relaxed`).

    Args:
        n_samples: samples per batch element.

    Example::

        >>> from torch.distributions import Normal
        >>> loc = torch.zeros(3, requires_grad=True)
        >>> Pathwise(n_samples=4)(lambda z: z.square(), Normal(loc, 1.0)).sum().backward()
        >>> loc.grad.shape
        torch.Size([3])
    """

    supported = "distributions with rsample (has_rsample = True)"

    def supports(self, distribution: Distribution) -> bool:
        return isinstance(distribution, Distribution) and bool(distribution.has_rsample)

    def _surrogate(
        self, f: Cost, distribution: Distribution, sample_shape: torch.Size, context: Any
    ) -> Tensor:
        z = distribution.rsample(sample_shape)
        return self._cost(f, z, sample_shape + distribution.batch_shape)
