"""ARM and DisARM: antithetic, unbiased gradient estimators for factorised Bernoulli latents.

For ``b ~ Bernoulli(σ(α))`` with independent coordinates, both draw one uniform vector ``u`` and
evaluate ``f`` at two antithetic binary vectors:

- ARM (Yin & Zhou, 2019): ĝ_i = (f(1[u > σ(−α)]) − f(1[u < σ(−α)])) (u_i − ½);
- DisARM (Dong, Mnih & Tucker, 2020): with b = 1[u < σ(α)], b̃ = 1[1 − u < σ(α)],
  ĝ_i = ½ (f(b) − f(b̃)) (−1)^{b̃_i} 1[b_i ≠ b̃_i] σ(|α_i|), ARM Rao-Blackwellised over u.

The surrogate's value is an unbiased estimate of E f(b) that also carries any pathwise gradient
of ``f`` (e.g. through decoder weights or ``−log q``): f(1[u > σ(−α)]) for ARM (its second point
1[u < σ(−α)] has law Bernoulli(σ(−α)), not that of b), ½ (f(b) + f(b̃)) for DisARM.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .surrogate import gradient_only

__all__ = ["arm", "disarm"]


def _sum_event(x: Tensor, event_dims: int) -> Tensor:
    return x.sum(tuple(range(-event_dims, 0))) if event_dims > 0 else x


def _expand_cost(cost: Tensor, event_dims: int) -> Tensor:
    return cost.reshape(cost.shape + (1,) * event_dims)


def _uniform(logits: Tensor) -> Tensor:
    return torch.rand(logits.shape, dtype=logits.dtype, device=logits.device)


def _check(logits: Tensor, event_dims: int) -> None:
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating point tensor, got {logits.dtype}")
    if not 0 <= event_dims <= logits.dim():
        raise ValueError(f"event_dims must be in [0, {logits.dim()}], got {event_dims}")


def arm(f: Callable[[Tensor], Tensor], logits: Tensor, event_dims: int = 1) -> Tensor:
    """ARM surrogate for ∇_α E_{b ~ Bernoulli(σ(α))}[f(b)] (Yin & Zhou, 2019).

    ĝ_i = (f(1[u > σ(−α)]) − f(1[u < σ(−α)])) (u_i − ½), u ~ U(0, 1)^d.

    Args:
        f: maps a {0, 1} tensor of ``logits``' shape to costs of shape
            ``logits.shape[:-event_dims]``.
        logits: α, the Bernoulli logits; the last ``event_dims`` dimensions are the latents.
        event_dims: how many trailing dimensions of ``logits`` ``f`` reduces over.

    Example::

        >>> logits = torch.zeros(10, requires_grad=True)
        >>> surrogate = arm(lambda b: (b - 0.45).square().sum(-1), logits)
        >>> surrogate.backward()
        >>> logits.grad.shape
        torch.Size([10])
    """
    _check(logits, event_dims)
    u = _uniform(logits)
    threshold = torch.sigmoid(-logits.detach())
    cost_1 = f((u > threshold).to(logits.dtype))
    cost_2 = f((u < threshold).to(logits.dtype))
    weight = _expand_cost((cost_1 - cost_2).detach(), event_dims) * (u - 0.5)
    return cost_1 + gradient_only(_sum_event(weight * logits, event_dims))


def disarm(f: Callable[[Tensor], Tensor], logits: Tensor, event_dims: int = 1) -> Tensor:
    """DisARM surrogate for ∇_α E_{b ~ Bernoulli(σ(α))}[f(b)] (Dong, Mnih & Tucker, 2020).

    ĝ_i = ½ (f(b) − f(b̃)) (−1)^{b̃_i} 1[b_i ≠ b̃_i] σ(|α_i|), b = 1[u < σ(α)], b̃ = 1[1−u < σ(α)].

    Args:
        f: maps a {0, 1} tensor of ``logits``' shape to costs of shape
            ``logits.shape[:-event_dims]``.
        logits: α, the Bernoulli logits; the last ``event_dims`` dimensions are the latents.
        event_dims: how many trailing dimensions of ``logits`` ``f`` reduces over.

    Example::

        >>> logits = torch.zeros(10, requires_grad=True)
        >>> surrogate = disarm(lambda b: (b - 0.45).square().sum(-1), logits)
        >>> surrogate.backward()
        >>> logits.grad.shape
        torch.Size([10])
    """
    _check(logits, event_dims)
    u = _uniform(logits)
    prob = torch.sigmoid(logits.detach())
    b = (u < prob).to(logits.dtype)
    b_tilde = (1.0 - u < prob).to(logits.dtype)
    cost = f(b)
    cost_tilde = f(b_tilde)
    sign = 1.0 - 2.0 * b_tilde
    weight = sign * (b != b_tilde).to(logits.dtype) * torch.sigmoid(logits.detach().abs())
    weight = 0.5 * _expand_cost((cost - cost_tilde).detach(), event_dims) * weight
    return 0.5 * (cost + cost_tilde) + gradient_only(_sum_event(weight * logits, event_dims))
