"""Surrogate losses: tensors whose *value* is the objective and whose *gradient* is an estimator.

Every estimator in :mod:`stochgrad.estimators` returns such a tensor, built from two pieces:

- :func:`gradient_only` ``(x) = x - stop_grad(x)``: value zero, gradient of ``x``;
- :func:`score_function_surrogate`: ``cost + gradient_only(stop_grad(cost - baseline) * log_prob)``.

So ``surrogate.mean().backward()`` gives the estimator, and ``surrogate.mean().item()`` still
reports the Monte Carlo estimate of the true objective (the pattern of Pyro's ``Trace_ELBO``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochgrad.special._autograd import gradient_only

__all__ = ["gradient_only", "score_function_surrogate"]


def _check_log_prob_shape(cost: Tensor, log_prob: Tensor) -> None:
    if torch.broadcast_shapes(cost.shape, log_prob.shape) != cost.shape:
        raise ValueError(
            f"log_prob must broadcast to the shape of cost {tuple(cost.shape)}, got "
            f"{tuple(log_prob.shape)}; sum log_prob over the latent dimensions first "
            "(or wrap the distribution in torch.distributions.Independent)"
        )


def score_function_surrogate(
    cost: Tensor, log_prob: Tensor, baseline: Tensor | float | None = None
) -> Tensor:
    """Surrogate of value ``cost`` whose gradient is the score-function (REINFORCE) estimator.

    ∇ surrogate = ∇cost + (cost − b) ∇log q(z), with no gradient through ``cost − b``
    (Williams, 1992). ``cost`` may depend on the parameters directly (its pathwise gradient is
    kept); ``baseline`` must not depend on the sample ``z`` for the estimator to stay unbiased.

    Args:
        cost: ``f(z)``, any shape.
        log_prob: ``log q(z)``, summed over latent dimensions, broadcastable to ``cost``.
        baseline: control variate ``b`` broadcastable to ``cost`` (``None`` means 0).

    Example::

        >>> logits = torch.zeros(3, requires_grad=True)
        >>> q = torch.distributions.Bernoulli(logits=logits)
        >>> z = q.sample()
        >>> surrogate = score_function_surrogate((z - 0.45) ** 2, q.log_prob(z), baseline=0.25)
        >>> surrogate.sum().backward()
        >>> logits.grad.shape
        torch.Size([3])
    """
    _check_log_prob_shape(cost, log_prob)
    signal = cost.detach() if baseline is None else (cost - baseline).detach()
    return cost + gradient_only(signal * log_prob)
