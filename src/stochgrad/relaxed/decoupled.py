"""Decoupled straight-through Gumbel-softmax: one temperature forward, another backward."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.utils import logits_to_probs

from stochgrad.relaxed._utils import (
    EMPTY_SHAPE,
    PyroCompatible,
    gumbel_like,
    logits_from,
)
from stochgrad.special._autograd import gradient_only

__all__ = ["DecoupledStraightThroughGumbelSoftmax"]


class DecoupledStraightThroughGumbelSoftmax(PyroCompatible, Distribution):
    r"""Exact one-hot categorical forward, Gumbel-softmax gradient at its own temperature backward.

    Math: keys ``s = logits / tau_forward + g`` (``g`` Gumbel); forward ``onehot(argmax s)``, an
    exact draw of Categorical(``softmax(logits / tau_forward)``); backward the gradient of
    ``softmax(s / tau_backward)``. With ``tau_forward = 1`` this is the straight-through
    Gumbel-softmax of Jang et al. (2017) at temperature ``tau_backward``. Shah, Yan, Mozer & Liu,
    "Improving Discrete Optimisation Via Decoupled Straight-Through Gumbel-Softmax",
    arXiv:2410.13331, 2024.

    Args:
        logits: unnormalised log-probabilities, shape ``(..., n)`` (give ``logits`` or ``probs``).
        tau_forward: temperature > 0 of the forward (sampled) categorical.
        tau_backward: temperature > 0 of the relaxation used for gradients.
        probs: category probabilities instead of ``logits``.
        validate_args: check parameters and values.

    Example::

        >>> dist = DecoupledStraightThroughGumbelSoftmax(torch.zeros(4), 1.0, 2.0)
        >>> dist.rsample((3,)).sum(-1)
        tensor([1., 1., 1.])
    """

    arg_constraints = {
        "logits": constraints.real_vector,
        "tau_forward": constraints.positive,
        "tau_backward": constraints.positive,
    }
    support = constraints.one_hot
    has_rsample = True

    def __init__(
        self,
        logits: Tensor | None = None,
        tau_forward: Tensor | float = 1.0,
        tau_backward: Tensor | float = 1.0,
        probs: Tensor | None = None,
        *,
        validate_args: bool | None = None,
    ) -> None:
        logits = logits_from(probs, logits)
        tau_forward = torch.as_tensor(tau_forward, dtype=logits.dtype, device=logits.device)
        tau_backward = torch.as_tensor(tau_backward, dtype=logits.dtype, device=logits.device)
        batch_shape = torch.broadcast_shapes(
            logits.shape[:-1], tau_forward.shape, tau_backward.shape
        )
        event_shape = logits.shape[-1:]
        self.logits = logits.expand(batch_shape + event_shape)
        self.tau_forward = tau_forward.expand(batch_shape)
        self.tau_backward = tau_backward.expand(batch_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DecoupledStraightThroughGumbelSoftmax, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        new.tau_forward = self.tau_forward.expand(batch_shape)
        new.tau_backward = self.tau_backward.expand(batch_shape)
        super(DecoupledStraightThroughGumbelSoftmax, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    @property
    def _forward_log_probs(self) -> Tensor:
        return torch.log_softmax(self.logits / self.tau_forward.unsqueeze(-1), dim=-1)

    @property
    def probs(self) -> Tensor:
        """Probabilities of the forward categorical, ``softmax(logits / tau_forward)``."""
        return logits_to_probs(self._forward_log_probs)

    @property
    def mean(self) -> Tensor:
        return self.probs

    @property
    def variance(self) -> Tensor:
        return self.probs * (1 - self.probs)

    def rsample(self, sample_shape: torch.Size = EMPTY_SHAPE) -> Tensor:
        keys = self.logits / self.tau_forward.unsqueeze(-1)
        keys = keys + gumbel_like(self._extended_shape(sample_shape), keys)
        soft = torch.softmax(keys / self.tau_backward.unsqueeze(-1), dim=-1)
        hard = torch.zeros_like(soft).scatter_(-1, keys.argmax(-1, keepdim=True), 1.0)
        return hard + gradient_only(soft)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return (value * self._forward_log_probs).sum(-1)
