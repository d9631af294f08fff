"""Numerics shared by the relaxed families: noise, logistic helpers and Pyro hooks.

The straight-through trick is ``hard + gradient_only(soft)``
(:func:`stochgrad.special._autograd.gradient_only`, the package's one such helper).
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.utils import clamp_probs, probs_to_logits

__all__ = [
    "EMPTY_SHAPE",
    "PyroCompatible",
    "open_unit_interval",
    "register_with_pyro",
    "binary_concrete_log_prob",
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
    return probs_to_logits(probs) if probs is not None else logits


def uniform_like(shape: torch.Size, like: Tensor) -> Tensor:
    """Uniform(0, 1) draws of ``shape`` kept strictly inside (0, 1) so their logits are finite."""
    return clamp_probs(torch.rand(shape, dtype=like.dtype, device=like.device))


def logistic_like(shape: torch.Size, like: Tensor) -> Tensor:
    """Standard logistic draws, ``logit(u)`` with ``u ~ Uniform(0, 1)``."""
    u = uniform_like(shape, like)
    return u.log() - (-u).log1p()


def gumbel_like(shape: torch.Size, like: Tensor) -> Tensor:
    """Standard Gumbel draws, ``-log(E)`` with ``E ~ Exponential(1)`` (one log, not two)."""
    exponential = torch.empty(shape, dtype=like.dtype, device=like.device).exponential_()
    return -exponential.clamp_min(torch.finfo(like.dtype).tiny).log()


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


def normal_to_logistic(v: Tensor) -> Tensor:
    """``logit(Phi(v))`` computed in log space, finite for every finite ``v``."""
    return torch.special.log_ndtr(v) - torch.special.log_ndtr(-v)


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


class PyroCompatible:
    """The hooks ``pyro.sample``, Pyro's plates and ELBOs call on a distribution.

    Pyro is optional: it is imported only inside the methods that return Pyro objects, and by
    :func:`register_with_pyro`, which makes the classes virtual Pyro distributions.
    """

    def __call__(self, sample_shape: torch.Size = EMPTY_SHAPE) -> Tensor:
        if self.has_rsample:
            return self.rsample(sample_shape)
        return self.sample(sample_shape)

    @property
    def event_dim(self) -> int:
        return len(self.event_shape)

    def shape(self, sample_shape: torch.Size = EMPTY_SHAPE) -> torch.Size:
        return torch.Size(sample_shape) + self.batch_shape + self.event_shape

    def expand_by(self, sample_shape: torch.Size):
        return self.expand(torch.Size(sample_shape) + self.batch_shape)

    def score_parts(self, value: Tensor):
        from pyro.distributions.score_parts import ScoreParts

        log_prob = self.log_prob(value)
        # A reparameterized site needs no score-function term.
        score_function = 0 if self.has_rsample else log_prob
        return ScoreParts(log_prob=log_prob, score_function=score_function, entropy_term=log_prob)

    def to_event(self, reinterpreted_batch_ndims: int | None = None):
        from pyro.distributions import Independent

        if reinterpreted_batch_ndims is None:
            reinterpreted_batch_ndims = len(self.batch_shape)
        if reinterpreted_batch_ndims == 0:
            return self
        return Independent(self, reinterpreted_batch_ndims)

    def mask(self, mask: Tensor | bool):
        from pyro.distributions import MaskedDistribution

        return MaskedDistribution(self, mask)


def register_with_pyro(classes: list[type]) -> None:
    """Make ``classes`` count as Pyro distributions when Pyro is installed (a no-op otherwise).

    Pyro's plates only broadcast sites whose distribution is a ``TorchDistributionMixin``; its
    metaclass is an ABC, so registering the classes as virtual subclasses suffices and keeps
    Pyro out of their bases.
    """
    if importlib.util.find_spec("pyro") is None:
        return
    try:
        from pyro.distributions.torch_distribution import TorchDistributionMixin
    except ImportError:  # an installed but unusable Pyro must not break stochgrad
        return

    for cls in classes:
        TorchDistributionMixin.register(cls)
