"""Exact Bernoulli samples forward, surrogate gradients backward (Bengio et al., 2013)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli

from stochgrad._typing import SampleShape
from stochgrad.relaxed._utils import EMPTY_SHAPE, PyroCompatible
from stochgrad.special._autograd import gradient_only

__all__ = ["StochasticTimesSmooth", "StraightThroughBernoulli"]


class StraightThroughBernoulli(PyroCompatible, Bernoulli):
    r"""Bernoulli whose ``rsample`` is an exact draw with the straight-through gradient.

    Math: forward ``b ~ Bernoulli(p)``; backward ``db/dp := 1`` (the identity surrogate).
    Bengio, Léonard & Courville, "Estimating or Propagating Gradients Through Stochastic Neurons
    for Conditional Computation", arXiv:1308.3432, 2013.

    Args:
        probs: probability of a one, in [0, 1] (give ``probs`` or ``logits``).
        logits: log-odds of a one.
        validate_args: check parameters and values.

    Example::

        >>> probs = torch.tensor([0.2, 0.7], requires_grad=True)
        >>> b = StraightThroughBernoulli(probs).rsample((5,))
        >>> b.sum().backward(); probs.grad
        tensor([5., 5.])
    """

    has_rsample = True

    def rsample(self, sample_shape: SampleShape = EMPTY_SHAPE) -> Tensor:
        probs = self.probs.expand(self._extended_shape(sample_shape))
        return torch.bernoulli(probs.detach()).add_(gradient_only(probs))


class StochasticTimesSmooth(PyroCompatible, Bernoulli):
    r"""Bernoulli whose ``rsample`` is an exact draw with the stochastic-times-smooth gradient.

    Math: ``b = g * c`` with ``g, c ~ Bernoulli(sqrt p)`` independent, so ``b ~ Bernoulli(p)``
    exactly; the factor ``c`` is replaced by its mean ``sqrt p`` in the backward pass, giving
    Bengio's ``db/dp := g / (2 sqrt p)`` (gradient of ``h = g * sqrt p``). The surrogate is biased
    (its mean is 1/2, not 1) by design. Bengio, Léonard & Courville, arXiv:1308.3432, 2013, §4.

    Args:
        probs: probability of a one, in [0, 1] (give ``probs`` or ``logits``).
        logits: log-odds of a one.
        validate_args: check parameters and values.

    Example::

        >>> dist = StochasticTimesSmooth(logits=torch.zeros(3))
        >>> dist.rsample((2,)).shape
        torch.Size([2, 3])
    """

    has_rsample = True

    def rsample(self, sample_shape: SampleShape = EMPTY_SHAPE) -> Tensor:
        shape = self._extended_shape(sample_shape)
        probs = self.probs
        # + tiny: at p = 0 (where g = 0) d sqrt(p) stays finite, so g d sqrt(p) = 0, not nan;
        # it moves sqrt(p) only for p below ~1e-30 (float32), and costs no backward pass
        smooth = torch.add(probs, torch.finfo(probs.dtype).tiny).sqrt_()
        # One uniform gives the pair (g, b = g c) its exact joint law: b = 1[u < p] implies
        # g = 1[u < sqrt p], and P(g = 1, b = 0) = sqrt p - p = sqrt p (1 - sqrt p).
        u = torch.rand(shape, dtype=probs.dtype, device=probs.device)
        gate = u < smooth.detach()
        # b in value (g b = b), g d(sqrt p) in gradient; b is written over u, in place
        return u.lt_(probs.detach()).add_(gradient_only(smooth) * gate)
