"""Hard concrete: the stretched and clipped binary concrete relaxation of an L0 gate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, constraints

from stochgrad._typing import SampleShape
from stochgrad.relaxed._utils import (
    EMPTY_SHAPE,
    PyroCompatible,
    binary_concrete_log_prob,
    broadcast_given,
    logistic_like,
)

__all__ = ["HardConcrete"]


class HardConcrete(PyroCompatible, Distribution):
    r"""Hard concrete gate ``z = clamp(gamma + (xi - gamma) s, 0, 1)``, ``s`` binary concrete.

    Math: ``s = sigmoid((log alpha + L) / beta)``, ``L ~ Logistic(0, 1)``; the law has density
    ``beta sigmoid(l) sigmoid(-l) / (s (1 - s) (xi - gamma))``, ``l = beta logit(s) - log alpha``,
    on (0, 1) and atoms at 0 and 1; ``log_prob`` is taken with respect to Lebesgue measure on
    (0, 1) plus unit point masses at 0 and 1. Louizos, Welling & Kingma, "Learning Sparse Neural
    Networks through L0 Regularization", ICLR 2018.

    Args:
        alpha: location ``alpha > 0`` (``log alpha`` is the gate's logit as ``beta -> 0``).
        beta: temperature ``beta > 0`` (the paper uses 2/3).
        xi: upper end of the stretched interval, ``xi > 1``.
        gamma: lower end of the stretched interval, ``gamma < 0``.
        validate_args: check parameters and values.

    Example::

        >>> gate = HardConcrete(torch.tensor([0.5, 2.0]), beta=2 / 3)
        >>> gate.rsample((3,)).shape, gate.expected_l0().shape
        (torch.Size([3, 2]), torch.Size([2]))
    """

    arg_constraints = {
        "alpha": constraints.positive,
        "beta": constraints.positive,
        "xi": constraints.greater_than(1.0),
        "gamma": constraints.less_than(0.0),
    }
    support = constraints.unit_interval
    has_rsample = True

    def __init__(
        self,
        alpha: Tensor | float,
        beta: Tensor | float = 2.0 / 3.0,
        xi: Tensor | float = 1.1,
        gamma: Tensor | float = -0.1,
        *,
        validate_args: bool | None = None,
    ) -> None:
        broadcast, self._given = broadcast_given(alpha, beta, xi, gamma)
        self.alpha, self.beta, self.xi, self.gamma = self._given  # validated as given
        super().__init__(broadcast[0].shape, validate_args=validate_args)
        self.alpha, self.beta, self.xi, self.gamma = broadcast

    def expand(
        self, batch_shape: SampleShape, _instance: HardConcrete | None = None
    ) -> HardConcrete:
        new = self._get_checked_instance(HardConcrete, _instance)
        batch_shape = torch.Size(batch_shape)
        for name in ("alpha", "beta", "xi", "gamma"):
            setattr(new, name, getattr(self, name).expand(batch_shape))
        new._given = self._given
        super(HardConcrete, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _stretched_logit(self, value: Tensor) -> Tensor:
        """``beta * logit(s) - log alpha`` for ``s`` the unstretched value of ``value``."""
        s = (value - self.gamma) / (self.xi - self.gamma)
        return self.beta * (s.log() - (-s).log1p()) - self.alpha.log()

    def expected_l0(self) -> Tensor:
        """``P(z != 0)``; its sum over gates is the expected L0 penalty of the paper (eq. 12)."""
        return torch.sigmoid(-self._stretched_logit(torch.zeros_like(self.alpha)))

    def rsample(self, sample_shape: SampleShape = EMPTY_SHAPE) -> Tensor:
        shape = self._extended_shape(sample_shape)
        alpha, beta, xi, gamma = self._given
        s = torch.sigmoid(logistic_like(shape, self.alpha).add_(alpha.log()) * beta.reciprocal())
        return torch.clamp(gamma + (xi - gamma) * s, 0.0, 1.0)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        # Evaluate the interior density at a safe point where value sits on an atom.
        inner = torch.where((value <= 0) | (value >= 1), torch.full_like(value, 0.5), value)
        s = (inner - self.gamma) / (self.xi - self.gamma)
        interior = (
            binary_concrete_log_prob(s, self.alpha.log(), self.beta) - (self.xi - self.gamma).log()
        )
        at_zero = F.logsigmoid(self._stretched_logit(torch.zeros_like(interior)))
        at_one = F.logsigmoid(-self._stretched_logit(torch.ones_like(interior)))
        return torch.where(value <= 0, at_zero, torch.where(value >= 1, at_one, interior))

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        below_one = torch.sigmoid(self._stretched_logit(value.clamp(max=1.0)))
        return torch.where(value >= 1, torch.ones_like(below_one), below_one)
