"""Generalized Gumbel-softmax: relaxed draws of a discrete law on finite (or truncated) support."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.utils import clamp_probs, logits_to_probs

from stochgrad.relaxed._utils import (
    EMPTY_SHAPE,
    PyroCompatible,
    gumbel_like,
    logits_from,
)
from stochgrad.special._autograd import gradient_only

__all__ = ["GeneralizedGumbelSoftmax"]


class GeneralizedGumbelSoftmax(PyroCompatible, Distribution):
    r"""Gumbel-softmax weights over the support ``values`` of a discrete law, and their projection.

    Math: ``w = softmax((log p + g) / tau)`` with ``g`` i.i.d. Gumbel is a relaxed one-hot over the
    support points; the relaxed discrete sample is ``x = sum_i w_i values_i``, which tends to an
    exact draw of the law as ``tau -> 0``. ``rsample`` returns ``w`` (whose density is the concrete
    density, or the categorical mass when ``hard``); ``rsample_value`` returns ``x``. Countable
    laws (Poisson, geometric, …) are truncated with :meth:`from_distribution`, the last support
    point taking the tail mass. Joo, Kim, Shin, Jang & Moon, "Generalized Gumbel-Softmax Gradient
    Estimator for Generic Discrete Random Variables", arXiv:2003.01847, 2020.

    Args:
        values: support points, shape ``(n,)`` or broadcastable to ``(..., n)``.
        probs: probabilities of the support points (give ``probs`` or ``logits``).
        logits: unnormalised log-probabilities of the support points.
        tau: temperature > 0, broadcastable to the batch shape.
        hard: return exact one-hot weights with straight-through gradients.
        validate_args: check parameters and values.

    Example::

        >>> poisson = torch.distributions.Poisson(torch.tensor(3.0))
        >>> dist = GeneralizedGumbelSoftmax.from_distribution(poisson, num_values=20, tau=0.3)
        >>> dist.rsample_value((4,)).shape, dist.event_shape
        (torch.Size([4]), torch.Size([20]))
    """

    arg_constraints = {
        "logits": constraints.real_vector,
        "tau": constraints.positive,
        "values": constraints.independent(constraints.real, 1),
    }
    has_rsample = True

    def __init__(
        self,
        values: Tensor,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        tau: Tensor | float = 0.5,
        hard: bool = False,
        *,
        validate_args: bool | None = None,
    ) -> None:
        logits = logits_from(probs, logits)
        tau = torch.as_tensor(tau, dtype=logits.dtype, device=logits.device)
        values = torch.as_tensor(values, dtype=logits.dtype, device=logits.device)
        if values.dim() < 1 or values.shape[-1] != logits.shape[-1]:
            raise ValueError(
                f"values must end in the number of support points {logits.shape[-1]}, "
                f"got shape {tuple(values.shape)}"
            )
        batch_shape = torch.broadcast_shapes(logits.shape[:-1], values.shape[:-1], tau.shape)
        event_shape = logits.shape[-1:]
        self.logits = logits.expand(batch_shape + event_shape)
        self.values = values.expand(batch_shape + event_shape)
        self.tau = tau.expand(batch_shape)
        self.hard = bool(hard)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @classmethod
    def from_distribution(
        cls,
        distribution: Distribution,
        num_values: int,
        tau: Tensor | float = 0.5,
        hard: bool = False,
    ) -> GeneralizedGumbelSoftmax:
        """Truncate a law on ``{0, 1, ...}`` to ``num_values`` points, the last taking the tail.

        Gradients reach the law's parameters through the truncated probabilities.
        """
        # The law's mean carries its dtype and device.
        like = distribution.mean
        support = torch.arange(num_values, dtype=like.dtype, device=like.device)
        grid = support.reshape((num_values,) + (1,) * len(distribution.batch_shape))
        # Points outside the law's support (e.g. above a binomial's total count) get a negligible
        # but finite log-probability, so the concrete density stays finite.
        grid = grid[:-1]
        inside = distribution.support.check(grid)
        head = distribution.log_prob(torch.where(inside, grid, torch.zeros_like(grid)))
        tiny = torch.finfo(head.dtype).tiny
        head = torch.where(inside, head, math.log(tiny)).movedim(0, -1)
        tail = (1 - head.exp().sum(-1, keepdim=True)).clamp_min(tiny).log()
        logits = torch.cat([head, tail], dim=-1)
        return cls(support.to(logits), logits=logits, tau=tau, hard=hard)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GeneralizedGumbelSoftmax, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        new.values = self.values.expand(batch_shape + self.event_shape)
        new.tau = self.tau.expand(batch_shape)
        new.hard = self.hard
        super(GeneralizedGumbelSoftmax, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        return constraints.one_hot if self.hard else constraints.simplex

    @property
    def probs(self) -> Tensor:
        return logits_to_probs(self.logits)

    def rsample(self, sample_shape: torch.Size = EMPTY_SHAPE) -> Tensor:
        noise = gumbel_like(self._extended_shape(sample_shape), self.logits)
        soft = torch.softmax((self.logits + noise) / self.tau.unsqueeze(-1), dim=-1)
        if not self.hard:
            # Weights that underflow to 0 would give log_prob = nan; keep them at float epsilon.
            return clamp_probs(soft)
        hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
        return hard + gradient_only(soft)

    def to_value(self, weights: Tensor) -> Tensor:
        """Project (relaxed) one-hot weights onto the support: ``sum_i w_i values_i``."""
        return (weights * self.values).sum(-1)

    def rsample_value(self, sample_shape: torch.Size = EMPTY_SHAPE) -> Tensor:
        """A relaxed draw of the discrete variable itself (batch shape, no event dimension)."""
        return self.to_value(self.rsample(sample_shape))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_probs = torch.log_softmax(self.logits, dim=-1)
        if self.hard:
            return (value * log_probs).sum(-1)
        # Concrete density over the first n-1 coordinates (Maddison et al., 2017, eq. 2).
        tau = self.tau.unsqueeze(-1)
        log_value = value.log()
        num_values = self.event_shape[0]
        return (
            math.lgamma(num_values)
            + (num_values - 1) * self.tau.log()
            + (log_probs - (tau + 1) * log_value).sum(-1)
            - num_values * (log_probs - tau * log_value).logsumexp(-1)
        )
