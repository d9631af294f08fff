"""Stochastic gates: the clipped Gaussian relaxation of a Bernoulli gate."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.utils import broadcast_all

from stochgrad._typing import SampleShape
from stochgrad.relaxed._utils import EMPTY_SHAPE, PyroCompatible

__all__ = ["GaussianRelaxedBernoulli"]


def _normal_pdf(x: Tensor) -> Tensor:
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


class GaussianRelaxedBernoulli(PyroCompatible, Distribution):
    r"""Stochastic gate ``z = clamp(loc + scale * eps, 0, 1)`` with ``eps ~ N(0, 1)``.

    Math: dz/dloc = 1[0 < loc + scale * eps < 1]; the law has atoms
    ``P(z=0) = Phi(-loc/scale)`` and ``P(z=1) = Phi((loc-1)/scale)`` and density
    ``N(z; loc, scale^2)`` on (0, 1). ``log_prob`` is taken with respect to Lebesgue measure on
    (0, 1) plus unit point masses at 0 and 1. Yamada et al., "Feature Selection using Stochastic
    Gates", ICML 2020.

    Args:
        loc: mean of the Gaussian before clipping (the gate parameter).
        scale: standard deviation of the noise, > 0 (the paper fixes 0.5).
        validate_args: check parameters and values.

    Example::

        >>> gate = GaussianRelaxedBernoulli(torch.tensor([0.3, 0.8]), scale=0.5)
        >>> gate.rsample((4,)).shape
        torch.Size([4, 2])
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(
        self, loc: Tensor | float, scale: Tensor | float = 0.5, *, validate_args: bool | None = None
    ) -> None:
        self.loc, self.scale = broadcast_all(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(
        self, batch_shape: SampleShape, _instance: GaussianRelaxedBernoulli | None = None
    ) -> GaussianRelaxedBernoulli:
        new = self._get_checked_instance(GaussianRelaxedBernoulli, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        super(GaussianRelaxedBernoulli, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def _bounds(self) -> tuple[Tensor, Tensor]:
        return -self.loc / self.scale, (1 - self.loc) / self.scale

    @property
    def mean(self) -> Tensor:
        a, b = self._bounds
        inside = torch.special.ndtr(b) - torch.special.ndtr(a)
        return (
            self.loc * inside
            + self.scale * (_normal_pdf(a) - _normal_pdf(b))
            + torch.special.ndtr(-b)
        )

    @property
    def variance(self) -> Tensor:
        a, b = self._bounds
        inside = torch.special.ndtr(b) - torch.special.ndtr(a)
        pdf_a, pdf_b = _normal_pdf(a), _normal_pdf(b)
        second_moment = (
            self.loc**2 * inside
            + 2 * self.loc * self.scale * (pdf_a - pdf_b)
            + self.scale**2 * (inside + a * pdf_a - b * pdf_b)
            + torch.special.ndtr(-b)
        )
        return second_moment - self.mean**2

    def expected_l0(self) -> Tensor:
        """``P(z != 0) = Phi(loc / scale)``; its sum is the expected L0 norm of the gates."""
        return torch.special.ndtr(self.loc / self.scale)

    def rsample(self, sample_shape: SampleShape = EMPTY_SHAPE) -> Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return torch.addcmul(self.loc, self.scale, eps).clamp(0.0, 1.0)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        a, b = self._bounds
        interior = (
            -0.5 * ((value - self.loc) / self.scale) ** 2
            - self.scale.log()
            - 0.5 * math.log(2 * math.pi)
        )
        at_zero = torch.special.log_ndtr(a).expand_as(interior)
        at_one = torch.special.log_ndtr(-b).expand_as(interior)
        return torch.where(value <= 0, at_zero, torch.where(value >= 1, at_one, interior))

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        below_one = torch.special.ndtr((value - self.loc) / self.scale)
        return torch.where(value >= 1, torch.ones_like(below_one), below_one)
