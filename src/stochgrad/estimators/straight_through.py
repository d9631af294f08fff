"""Straight-through samples: discrete in value, with the gradient of a continuous surrogate.

``hard + (soft − stop_grad(soft))`` has the value of the discrete sample and the gradient of
``soft``. The resulting gradient of E f(b) is *biased* (see ``docs/estimators.md`` for the
measured bias); these are cheap, low-variance alternatives to the unbiased estimators.

The samples come from the distributions of :mod:`stochgrad.relaxed`; these functions only fix
the estimator (which relaxation supplies the gradient) behind one call taking logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochgrad.relaxed import (
    DecoupledStraightThroughGumbelSoftmax,
    RelaxedBernoulli,
    StraightThroughBernoulli,
)
from stochgrad.relaxed._utils import straight_through

__all__ = [
    "gumbel_straight_through_bernoulli",
    "gumbel_straight_through_categorical",
    "straight_through_bernoulli",
]


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def straight_through_bernoulli(logits: Tensor) -> Tensor:
    """b ~ Bernoulli(σ(α)) in value, with gradient ∂b/∂α := σ'(α).

    The straight-through estimator of Bengio, Léonard & Courville (2013).

    Args:
        logits: α, any shape.

    Example::

        >>> logits = torch.zeros(5, requires_grad=True)
        >>> b = straight_through_bernoulli(logits)
        >>> (b - 0.45).square().sum().backward()
        >>> sorted(set(b.tolist()) | {0.0, 1.0})
        [0.0, 1.0]
    """
    return StraightThroughBernoulli(logits=logits, validate_args=False).rsample()


def gumbel_straight_through_bernoulli(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """b = H(z) in value, with the gradient of σ(z/λ), z = α + logit(u), u ~ U(0, 1).

    The binary Concrete / Gumbel-softmax straight-through estimator (Maddison, Mnih & Teh, 2017;
    Jang, Gu & Poole, 2017).

    Args:
        logits: α, any shape.
        temperature: λ > 0 of the relaxation whose gradient is used.

    Example::

        >>> logits = torch.zeros(5, requires_grad=True)
        >>> b = gumbel_straight_through_bernoulli(logits, temperature=0.5)
        >>> (b - 0.45).square().sum().backward()
    """
    _check_temperature(temperature)
    temperature_ = torch.tensor(temperature, dtype=logits.dtype, device=logits.device)
    soft = RelaxedBernoulli(temperature_, logits=logits, validate_args=False).rsample()
    return straight_through((soft.detach() > 0.5).to(logits.dtype), soft)


def gumbel_straight_through_categorical(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """One-hot argmax_k(α_k + g_k) in value, gradient of softmax((α + g)/λ), g ~ Gumbel(0, 1).

    Straight-through Gumbel-softmax (Jang, Gu & Poole, 2017); categories on the last dimension.

    Args:
        logits: α, unnormalised log-probabilities, shape ``(*batch, K)``.
        temperature: λ > 0 of the relaxation whose gradient is used.

    Example::

        >>> logits = torch.zeros(2, 3, requires_grad=True)
        >>> y = gumbel_straight_through_categorical(logits, temperature=0.5)
        >>> y.sum(-1).tolist()
        [1.0, 1.0]
    """
    _check_temperature(temperature)
    if logits.dim() == 0:
        raise ValueError("logits must have at least one dimension (the categories)")
    # Forward temperature 1: the forward draw is Categorical(softmax(logits)) itself.
    return DecoupledStraightThroughGumbelSoftmax(
        logits, tau_forward=1.0, tau_backward=temperature, validate_args=False
    ).rsample()
