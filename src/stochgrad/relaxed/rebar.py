"""The relaxation of REBAR/RELAX, with the conditional relaxation given the hard draw."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.utils import clamp_probs

from stochgrad._typing import SampleShape
from stochgrad.relaxed._utils import (
    EMPTY_SHAPE,
    PyroCompatible,
    binary_concrete_log_prob,
    broadcast_given,
    conditional_logistic,
    logistic_like,
    open_unit_interval,
    uniform_like,
)

__all__ = ["RebarRelaxation", "RebarSample"]


class RebarSample(NamedTuple):
    """One REBAR draw: ``hard = H(z)``, ``relaxed = sigmoid(z / lambd)`` and ``conditional``.

    ``conditional`` is ``sigmoid(z~ / lambd)`` with ``z~`` drawn from ``z | hard``.
    """

    hard: Tensor
    relaxed: Tensor
    conditional: Tensor


class RebarRelaxation(PyroCompatible, Distribution):
    r"""Relaxed Bernoulli ``sigmoid(z / lambd)``, ``z = logit theta + logit u``, and conditional.

    Math: ``b = 1[z > 0] ~ Bernoulli(theta)``; given ``b``, ``z~ = logit theta + logit u~`` with
    ``u~ = 1 - theta + theta v`` (``b = 1``) or ``u~ = (1 - theta) v`` (``b = 0``), ``v ~ U(0, 1)``,
    so ``z~ | b`` has the law of ``z | b`` and is reparameterized in ``theta``. ``rsample`` and
    ``log_prob`` describe ``sigmoid(z / lambd)`` (binary concrete). Tucker, Mnih, Maddison, Lawson &
    Sohl-Dickstein, "REBAR", NeurIPS 2017; Grathwohl et al., "Backpropagation through the Void"
    (RELAX), ICLR 2018.

    Args:
        theta: probability of a one, in (0, 1).
        lambd: temperature > 0 of the relaxation.
        validate_args: check parameters and values.

    Example::

        >>> dist = RebarRelaxation(torch.tensor([0.3, 0.6]), lambd=0.5)
        >>> draw = dist.rsample_rebar((4,))
        >>> bool(((draw.conditional > 0.5) == draw.hard.bool()).all())
        True
    """

    arg_constraints = {"theta": open_unit_interval, "lambd": constraints.positive}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(
        self, theta: Tensor | float, lambd: Tensor | float, *, validate_args: bool | None = None
    ) -> None:
        broadcast, self._given = broadcast_given(theta, lambd)
        self.theta, self.lambd = self._given  # validated as given
        super().__init__(broadcast[0].shape, validate_args=validate_args)
        self.theta, self.lambd = broadcast

    def expand(
        self, batch_shape: SampleShape, _instance: RebarRelaxation | None = None
    ) -> RebarRelaxation:
        new = self._get_checked_instance(RebarRelaxation, _instance)
        batch_shape = torch.Size(batch_shape)
        new.theta = self.theta.expand(batch_shape)
        new.lambd = self.lambd.expand(batch_shape)
        new._given = self._given
        super(RebarRelaxation, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def _logit(self) -> Tensor:
        return torch.logit(self.theta)

    def _logistic(self, sample_shape: SampleShape) -> Tensor:
        """``z = logit theta + L``, ``L ~ Logistic(0, 1)``, of the extended shape."""
        theta, _ = self._given
        return logistic_like(self._extended_shape(sample_shape), self.theta).add_(theta.logit())

    def _relax(self, z: Tensor) -> Tensor:
        return clamp_probs(torch.sigmoid(z * self._given[1].reciprocal()))

    def rsample(self, sample_shape: SampleShape = EMPTY_SHAPE) -> Tensor:
        return self._relax(self._logistic(sample_shape))

    def conditional_rsample(self, hard: Tensor) -> Tensor:
        """``sigmoid(z~ / lambd)``, ``z~ ~ p(z | H(z) = hard)``, reparameterized in ``theta``."""
        shape = torch.broadcast_shapes(hard.shape, self.batch_shape)
        return self._relax(conditional_logistic(self._logit, hard, uniform_like(shape, self.theta)))

    def rsample_rebar(self, sample_shape: SampleShape = EMPTY_SHAPE) -> RebarSample:
        """Draw ``(hard, relaxed, conditional)`` as REBAR and RELAX use them."""
        z = self._logistic(sample_shape)
        hard = (z > 0).to(z.dtype).detach()
        return RebarSample(hard, self._relax(z), self.conditional_rsample(hard))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return binary_concrete_log_prob(value, self._logit, self.lambd)

    def log_prob_hard(self, hard: Tensor) -> Tensor:
        """Bernoulli(``theta``) log-mass of the hard draw (the score-function term of REBAR)."""
        return hard * self.theta.log() + (1 - hard) * (-self.theta).log1p()
