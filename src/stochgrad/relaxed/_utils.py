"""Numerics shared by the relaxed families: noise and logistic helpers.

The straight-through trick is ``hard + gradient_only(soft)``
(:func:`stochgrad.special._autograd.gradient_only`, the package's one such helper).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all, probs_to_logits

from stochgrad.pyro import PyroCompatible  # the mixin every relaxed family subclasses

__all__ = [
    "EMPTY_SHAPE",
    "PyroCompatible",
    "open_unit_interval",
    "binary_concrete_log_prob",
    "broadcast_given",
    "conditional_logistic",
    "gumbel_like",
    "logits_from",
    "logistic_like",
    "normal_to_logistic",
    "logistic_to_normal",
    "uniform_like",
]


EMPTY_SHAPE = torch.Size()


class _OpenInterval(constraints.Constraint):
    """The open interval ``(lower, upper)``: parameters whose logit must be finite."""

    def __init__(self, lower: float, upper: float) -> None:
        self.lower, self.upper = lower, upper
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        return (value > self.lower) & (value < self.upper)


open_unit_interval = _OpenInterval(0.0, 1.0)


def logits_from(probs: Tensor | None, logits: Tensor | None) -> Tensor:
    """The logits of a categorical parameterised by exactly one of ``probs`` and ``logits``."""
    if (probs is None) == (logits is None):
        raise ValueError("give exactly one of probs or logits")
    return probs_to_logits(probs) if probs is not None else cast(Tensor, logits)


def broadcast_given(*params: Tensor | float) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """``broadcast_all(*params)``, and the parameters as given (numbers as 0-dim tensors).

    A formula that broadcasts the given parameters against its noise never forms a scalar
    parameter, nor its gradient (which autograd would sum back), at the full batch size, and
    constraints checked on them are checked once per value.

    Example::

        >>> (theta, lambd), given = broadcast_given(torch.rand(4, 3), 0.5)
        >>> lambd.shape, given[1].shape
        (torch.Size([4, 3]), torch.Size([]))
    """
    broadcast = broadcast_all(*params)
    like = broadcast[0]
    given = tuple(
        p if isinstance(p, Tensor) else torch.tensor(p, dtype=like.dtype, device=like.device)
        for p in params
    )
    return broadcast, given


def uniform_like(shape: torch.Size, like: Tensor) -> Tensor:
    """Uniform(0, 1) draws of ``shape`` kept strictly inside (0, 1) so their logits are finite.

    Clamped to ``[eps, 1 - eps]`` as ``clamp_probs`` does, in place (no second tensor).
    """
    eps = torch.finfo(like.dtype).eps
    return torch.rand(shape, dtype=like.dtype, device=like.device).clamp_(eps, 1 - eps)


def logistic_like(shape: torch.Size, like: Tensor) -> Tensor:
    """Standard logistic draws, ``logit(u)`` with ``u ~ Uniform(0, 1)`` kept in ``[eps, 1 - eps]``.

    One in-place ``logit_`` (which clamps to the same interval as :func:`uniform_like`) instead of
    ``log u - log1p(-u)``: a fifth of the time on CPU, where ``log1p`` is not vectorized.
    """
    eps = torch.finfo(like.dtype).eps
    return torch.rand(shape, dtype=like.dtype, device=like.device).logit_(eps)


def gumbel_like(shape: torch.Size, like: Tensor) -> Tensor:
    """Standard Gumbel draws, ``-log(-log u)`` with ``u ~ Uniform(0, 1)`` kept inside (0, 1).

    Two vectorized logs on uniforms, in place, cost a quarter of ``-log(E)`` with ``E`` from
    ``exponential_`` (measured on CPU: ATen's exponential sampler is not vectorized).
    """
    return uniform_like(shape, like).log_().neg_().log_().neg_()


def conditional_logistic(logits: Tensor, hard: Tensor, v: Tensor) -> Tensor:
    """``z~ ~ p(z | 1[z > 0] = hard)`` for ``z = logits + Logistic(0, 1)``, reparameterised by v.

    ``z~ = logits + logit(u~)`` with ``u~ = 1 - theta (1 - v)`` (hard = 1) or
    ``u~ = (1 - theta) v`` (hard = 0), ``theta = sigmoid(logits)`` (Tucker et al., 2017, REBAR).
    ``log u~`` and ``log(1 - u~)`` are formed in log space: ``1 - u~`` rounds to 0 in float32
    for ``theta (1 - v) < 3e-8``, which would make the value infinite and the gradient nan.
    """
    log_above = F.logsigmoid(logits) + (-v).log1p()  # log(1 - u~) when hard = 1
    log_below = F.logsigmoid(-logits) + v.log()  # log u~ when hard = 0
    given_one = (-log_above.exp()).log1p() - log_above
    given_zero = log_below - (-log_below.exp()).log1p()
    return logits + torch.where(hard > 0.5, given_one, given_zero)


# |v| beyond which the square of erfc(|v|/√2) (in the derivative of 2/erfc) leaves the normal
# range of the dtype: erfc(18.6) ~ 1e-152, erfc(6.1) ~ 1e-18.
_NDTR_NORMAL_RANGE = {torch.float64: 26.0, torch.float32: 8.5, torch.bfloat16: 8.5}


def normal_to_logistic(v: Tensor) -> Tensor:
    """``logit(Phi(v))``, finite for every finite ``v``.

    ``= sign(v) log(1/q - 1)`` with the tail ``q = Phi(-|v|) = erfc(|v|/√2) / 2 <= 1/2`` (so
    ``1/q - 1 >= 1`` does not cancel): accurate on both tails, and a third of the cost of two
    ``log_ndtr``. Where ``q`` would leave the normal range of the dtype (eager mode: only when
    some element does) ``log_ndtr`` takes over.
    """
    limit = _NDTR_NORMAL_RANGE.get(v.dtype, 5.0)
    magnitude = v.abs()
    far = magnitude > limit
    exact_needed = torch.compiler.is_compiling() or v.device.type != "cpu" or bool(far.any())
    if exact_needed:  # clamped so that the unused branch has finite gradients
        magnitude = magnitude.clamp_max(limit)
    twice_tail = torch.special.erfc(magnitude * 0.5**0.5)
    # (times sign(v), not copysign: copysign passes no gradient where its value rounds to 0)
    out = (2 / twice_tail - 1).log() * v.sign()
    if exact_needed:
        out = torch.where(far, torch.special.log_ndtr(v) - torch.special.log_ndtr(-v), out)
    return out


def logistic_to_normal(logistic: Tensor) -> Tensor:
    """``Phi^{-1}(sigmoid(l))``, the inverse of :func:`normal_to_logistic`.

    Evaluated on the tail that keeps ``sigmoid`` away from 1, so large ``|l|`` stays finite.
    """
    tail = torch.special.ndtri(torch.sigmoid(-logistic.abs()))
    return -torch.sign(logistic) * tail


def binary_concrete_log_prob(value: Tensor, logit: Tensor, temperature: Tensor) -> Tensor:
    """Log density of ``sigmoid((logit + L) / temperature)``, ``L ~ Logistic(0, 1)``, at ``value``.

    With ``l = temperature * logit(value) - logit`` it is
    ``log temperature + log sigmoid(l) + log sigmoid(-l) - log value - log(1 - value)``
    (Maddison, Mnih & Teh, 2017, eq. 21).
    """
    log_value, log1m_value = value.log(), (-value).log1p()
    logistic = temperature * (log_value - log1m_value) - logit
    return (
        temperature.log()
        + F.logsigmoid(logistic)
        + F.logsigmoid(-logistic)
        - log_value
        - log1m_value
    )
