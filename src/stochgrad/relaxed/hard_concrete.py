"""Hard concrete: the stretched and clipped binary concrete relaxation of an L0 gate."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
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


def _reduce(a: Tensor, b: Tensor, shape: torch.Size) -> Tensor:
    """``a * b`` summed down to ``shape`` (a dot product, no temporary, for scalars)."""
    if shape.numel() == 1 and a.shape == b.shape:
        return torch.dot(a.reshape(-1), b.reshape(-1)).reshape(shape)
    return (a * b).sum_to_size(shape)


class _StretchedGate(torch.autograd.Function):
    """``z = clamp(gamma + (xi - gamma) s, 0, 1)``, ``s = sigmoid(x)``, ``x = (log alpha + L) /
    beta``.

    Forward in place over the noise ``L``; backward in closed form, with ``g`` the incoming
    gradient where ``0 < z < 1`` and ``h = g (xi - gamma) s (1 - s)``: ``dxi = Σ g s``,
    ``dgamma = Σ g (1 - s)``, ``dalpha = h / (beta alpha)``, ``dbeta = -Σ h x / beta``. Half
    the full-size temporaries of autograd's graph, and no full-size gradient of a scalar.
    """

    @staticmethod
    def forward(
        ctx: Any, noise: Tensor, alpha: Tensor, beta: Tensor, xi: Tensor, gamma: Tensor
    ) -> Tensor:
        logit = noise.add_(alpha.log()).mul_(beta.reciprocal())
        s = torch.sigmoid(logit)
        z = torch.addcmul(gamma, s, xi - gamma).clamp_(0.0, 1.0)
        ctx.save_for_backward(logit, s, z, alpha, beta, xi, gamma)
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        logit, s, z, alpha, beta, xi, gamma = ctx.saved_tensors
        _, need_alpha, need_beta, need_xi, need_gamma = ctx.needs_input_grad
        inside = torch.where(z.gt(0).logical_and_(z.lt(1)), grad, 0.0)
        grad_alpha = grad_beta = grad_xi = grad_gamma = None
        if need_xi or need_gamma:
            weighted = _reduce(inside, s, torch.broadcast_shapes(xi.shape, gamma.shape))
            grad_xi = weighted.sum_to_size(xi.shape) if need_xi else None
            if need_gamma:
                grad_gamma = inside.sum_to_size(gamma.shape) - weighted.sum_to_size(gamma.shape)
        if need_alpha or need_beta:
            slope = torch.addcmul(s, s, s, value=-1).mul_(inside).mul_(xi - gamma)
            if need_beta:
                grad_beta = -_reduce(slope, logit, beta.shape) / beta
            if need_alpha:
                grad_alpha = slope.div_(beta).div_(alpha).sum_to_size(alpha.shape)
        return None, grad_alpha, grad_beta, grad_xi, grad_gamma


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
        return _StretchedGate.apply(logistic_like(shape, self.alpha), *self._given)

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
