"""Invertible Gaussian reparameterization (IGR): a Gaussian pushed through softmax++."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.utils import broadcast_all, clamp_probs

from stochgrad._typing import SampleShape
from stochgrad.relaxed._utils import EMPTY_SHAPE, PyroCompatible

__all__ = ["InvertibleGaussian", "softmax_plus_plus"]


def softmax_plus_plus(
    y: Tensor, temperature: Tensor | float, delta: Tensor | float = 1.0
) -> Tensor:
    r"""``softmax++``: map ``y`` in R^K to the interior of the (K+1)-simplex, invertibly.

    Math: ``z_k = exp(y_k / t) / (sum_j exp(y_j / t) + delta)`` for ``k <= K`` and
    ``z_{K+1} = delta / (sum_j exp(y_j / t) + delta)``, i.e. ``softmax([y / t, log delta])``.
    Potapczynski, Loaiza-Ganem & Cunningham, NeurIPS 2020, eq. (4).

    Args:
        y: points of shape ``(..., K)``.
        temperature: ``t > 0``, broadcastable to ``y.shape[:-1]``.
        delta: ``delta > 0``, broadcastable to ``y.shape[:-1]``.

    Example::

        >>> softmax_plus_plus(torch.zeros(2), 1.0)
        tensor([0.3333, 0.3333, 0.3333])
    """
    temperature = torch.as_tensor(temperature, dtype=y.dtype, device=y.device).unsqueeze(-1)
    log_delta = torch.as_tensor(delta, dtype=y.dtype, device=y.device).log().unsqueeze(-1)
    logits = torch.cat([y / temperature, log_delta.expand(y.shape[:-1] + (1,))], dim=-1)
    return torch.softmax(logits, dim=-1)


class InvertibleGaussian(PyroCompatible, Distribution):
    r"""IGR: ``z = softmax++((loc + scale * eps) / temperature)``, relaxed one-hot of K+1 classes.

    Math: ``y = loc + scale * eps`` in R^K; ``log p(z) = sum_k log N(y_k; loc_k, scale_k^2)
    + K log t - sum_{k=1}^{K+1} log z_k`` with ``y = t (log z_{1:K} - log z_{K+1} + log delta)``
    (density over the first K coordinates). As ``t -> 0``, ``z`` tends to the one-hot of
    ``argmax([y, 0])`` (for ``delta = 1``). Potapczynski, Loaiza-Ganem & Cunningham, "Invertible
    Gaussian Reparameterization: Revisiting the Gumbel-Softmax", NeurIPS 2020.

    Args:
        loc: mean of the Gaussian, shape ``(..., K)``.
        scale: standard deviation of the Gaussian, > 0, broadcastable to ``loc``.
        temperature: ``t > 0``, broadcastable to the batch shape.
        delta: the extra mass of softmax++, > 0 (1 in the paper).
        validate_args: check parameters and values.

    Example::

        >>> igr = InvertibleGaussian(torch.zeros(3), torch.ones(3), temperature=0.5)
        >>> igr.event_shape, igr.rsample((2,)).shape
        (torch.Size([4]), torch.Size([2, 4]))
    """

    arg_constraints = {
        "loc": constraints.independent(constraints.real, 1),
        "scale": constraints.independent(constraints.positive, 1),
        "temperature": constraints.positive,
        "delta": constraints.positive,
    }
    support = constraints.simplex
    has_rsample = True

    def __init__(
        self,
        loc: Tensor,
        scale: Tensor | float,
        temperature: Tensor | float,
        delta: Tensor | float = 1.0,
        *,
        validate_args: bool | None = None,
    ) -> None:
        loc, scale = broadcast_all(loc, scale)
        if loc.dim() < 1:
            raise ValueError(f"loc must have at least one dimension (K >= 1), got {loc.shape}")
        temperature, delta = broadcast_all(temperature, delta)
        temperature = temperature.to(loc)
        delta = delta.to(loc)
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], temperature.shape)
        self.loc = loc.expand(batch_shape + loc.shape[-1:])
        self.scale = scale.expand(self.loc.shape)
        self.temperature = temperature.expand(batch_shape)
        self.delta = delta.expand(batch_shape)
        event_shape = torch.Size([loc.shape[-1] + 1])
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(InvertibleGaussian, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.loc.shape[-1:])
        new.scale = self.scale.expand(new.loc.shape)
        new.temperature = self.temperature.expand(batch_shape)
        new.delta = self.delta.expand(batch_shape)
        super(InvertibleGaussian, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: SampleShape = EMPTY_SHAPE) -> Tensor:
        shape = torch.Size(sample_shape) + self.loc.shape
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        z = softmax_plus_plus(self.loc + self.scale * eps, self.temperature, self.delta)
        # Coordinates that underflow to 0 (cold temperature) would make log_prob nan.
        return clamp_probs(z)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_value = value.log()
        temperature = self.temperature.unsqueeze(-1)
        log_ratio = log_value[..., :-1] - log_value[..., -1:] + self.delta.log().unsqueeze(-1)
        y = temperature * log_ratio
        normal = (
            -0.5 * ((y - self.loc) / self.scale) ** 2
            - self.scale.log()
            - 0.5 * math.log(2 * math.pi)
        )
        num_free = self.loc.shape[-1]
        return normal.sum(-1) + num_free * self.temperature.log() - log_value.sum(-1)
