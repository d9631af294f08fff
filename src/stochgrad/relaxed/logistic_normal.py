"""Logistic normal through softmax, and the Laplace bridge to and from the Dirichlet."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Dirichlet, Distribution, constraints
from torch.distributions.utils import broadcast_all, clamp_probs

from stochgrad._typing import SampleShape
from stochgrad.relaxed._utils import EMPTY_SHAPE, PyroCompatible

__all__ = ["LogisticNormalSoftmax", "dirichlet_approximation", "lognorm_approximation"]


class LogisticNormalSoftmax(PyroCompatible, Distribution):
    r"""``z = softmax(x)`` with ``x ~ N(loc, diag(scale^2))`` in R^K: a law on the K-simplex.

    Math: softmax forgets a common shift ``c``, so with ``r = log z - loc`` and
    ``A = sum 1/scale^2``, integrating ``c`` out gives ``log p(z) = -sum log z - (K-1)/2 log 2 pi
    - sum log scale - 1/2 log A - 1/2 (sum r^2/scale^2 - (sum r/scale^2)^2 / A)``
    (density over the first K-1 coordinates). Aitchison & Shen, "Logistic-normal distributions",
    Biometrika 1980; Hobbhahn, Kristiadi & Hennig, "Fast Predictive Uncertainty for Classification
    with Bayesian Deep Networks" (the Laplace bridge), UAI 2022.

    Args:
        loc: mean of the Gaussian, shape ``(..., K)`` with ``K >= 2``.
        scale: standard deviation of the Gaussian, > 0, broadcastable to ``loc``.
        validate_args: check parameters and values.

    Example::

        >>> dist = LogisticNormalSoftmax(torch.zeros(3), torch.ones(3))
        >>> dist.rsample((2,)).shape, dist.event_shape
        (torch.Size([2, 3]), torch.Size([3]))
    """

    arg_constraints = {
        "loc": constraints.independent(constraints.real, 1),
        "scale": constraints.independent(constraints.positive, 1),
    }
    support = constraints.simplex
    has_rsample = True

    def __init__(
        self, loc: Tensor, scale: Tensor | float, *, validate_args: bool | None = None
    ) -> None:
        self.loc, self.scale = broadcast_all(loc, scale)
        if self.loc.dim() < 1 or self.loc.shape[-1] < 2:
            raise ValueError(
                f"loc must have a last dimension K >= 2 (categories), got shape {tuple(loc.shape)}"
            )
        super().__init__(self.loc.shape[:-1], self.loc.shape[-1:], validate_args=validate_args)

    def expand(
        self, batch_shape: SampleShape, _instance: LogisticNormalSoftmax | None = None
    ) -> LogisticNormalSoftmax:
        new = self._get_checked_instance(LogisticNormalSoftmax, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.scale = self.scale.expand(batch_shape + self.event_shape)
        super(LogisticNormalSoftmax, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: SampleShape = EMPTY_SHAPE) -> Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        # Coordinates that underflow to 0 would make log_prob infinite.
        return clamp_probs(torch.softmax(self.loc + self.scale * eps, dim=-1))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_value = value.log()
        precision = self.scale.pow(-2)
        residual = log_value - self.loc
        total_precision = precision.sum(-1)
        quadratic = (precision * residual**2).sum(-1) - (precision * residual).sum(
            -1
        ) ** 2 / total_precision
        num_categories = self.event_shape[0]
        return (
            -log_value.sum(-1)
            - 0.5 * (num_categories - 1) * math.log(2 * math.pi)
            - self.scale.log().sum(-1)
            - 0.5 * total_precision.log()
            - 0.5 * quadratic
        )

    def log_ratio_normal(self) -> tuple[Tensor, Tensor]:
        """Mean and covariance of the additive log-ratios ``x_{1:K-1} - x_K`` (identifiable)."""
        variance = self.scale.pow(2)
        mean = self.loc[..., :-1] - self.loc[..., -1:]
        covariance = torch.diag_embed(variance[..., :-1]) + variance[..., -1:].unsqueeze(-1)
        return mean, covariance


def lognorm_approximation(dirichlet: Dirichlet) -> LogisticNormalSoftmax:
    r"""Laplace bridge from a Dirichlet to the matching :class:`LogisticNormalSoftmax`.

    Math: ``loc_k = log a_k - mean_j log a_j``,
    ``scale_k^2 = (1 - 2/K) / a_k + sum_j (1/a_j) / K^2``. Hobbhahn, Kristiadi & Hennig, UAI 2022,
    eq. (5) (the diagonal of the Laplace approximation in the softmax basis).

    Args:
        dirichlet: the Dirichlet with concentration ``a`` of shape ``(..., K)``.

    Example::

        >>> lognorm_approximation(Dirichlet(torch.tensor([2.0, 3.0, 4.0]))).event_shape
        torch.Size([3])
    """
    concentration = dirichlet.concentration
    num_categories = concentration.shape[-1]
    log_concentration = concentration.log()
    loc = log_concentration - log_concentration.mean(-1, keepdim=True)
    inverse = concentration.reciprocal()
    variance = (1 - 2 / num_categories) * inverse + inverse.sum(
        -1, keepdim=True
    ) / num_categories**2
    return LogisticNormalSoftmax(loc, variance.sqrt())


def dirichlet_approximation(logistic_normal: LogisticNormalSoftmax) -> Dirichlet:
    r"""Laplace bridge from a :class:`LogisticNormalSoftmax` to the matching Dirichlet.

    Math: ``a_k = (1 - 2/K + exp(loc_k) sum_j exp(-loc_j) / K^2) / scale_k^2``; the exact inverse
    of :func:`lognorm_approximation`. Hobbhahn, Kristiadi & Hennig, UAI 2022, eq. (6).

    Args:
        logistic_normal: the logistic normal with ``loc``, ``scale`` of shape ``(..., K)``.

    Example::

        >>> logistic_normal = LogisticNormalSoftmax(torch.zeros(3), torch.ones(3))
        >>> dirichlet_approximation(logistic_normal).concentration
        tensor([0.6667, 0.6667, 0.6667])
    """
    loc, scale = logistic_normal.loc, logistic_normal.scale
    num_categories = loc.shape[-1]
    # exp(loc_k) * sum_j exp(-loc_j) in log space, so large |loc| does not overflow.
    cross = (loc + torch.logsumexp(-loc, dim=-1, keepdim=True)).exp()
    concentration = (1 - 2 / num_categories + cross / num_categories**2) / scale.pow(2)
    return Dirichlet(concentration)
