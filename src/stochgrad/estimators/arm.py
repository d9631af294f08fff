"""ARM and DisARM: antithetic, unbiased gradient estimators for factorised Bernoulli latents.

For ``b ~ Bernoulli(σ(α))`` with independent coordinates, both draw one uniform vector ``u`` and
evaluate ``f`` at the antithetic pair b = 1[u < σ(α)], b̃ = 1[1 − u < σ(α)] = 1[u > σ(−α)],
each of law Bernoulli(σ(α)):

- ARM (Yin & Zhou, 2019, eq. 5): ĝ_i = (f(b̃) − f(b)) (u_i − ½);
- DisARM (Dong, Mnih & Tucker, 2020): ĝ_i = ½ (f(b) − f(b̃)) (−1)^{b̃_i} 1[b_i ≠ b̃_i] σ(|α_i|),
  ARM Rao-Blackwellised over u given (b, b̃).

The surrogate's value ½ (f(b) + f(b̃)) is an unbiased estimate of E f(b) that also carries any
pathwise gradient of ``f`` (e.g. through decoder weights or ``−log q``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .surrogate import gradient_only

__all__ = ["arm", "disarm"]


def _antithetic_surrogate(
    f: Callable[[Tensor], Tensor],
    logits: Tensor,
    event_dims: int,
    weight: Callable[[Tensor, Tensor, Tensor], Tensor],
) -> Tensor:
    """½ (f(b) + f(b̃)) in value, gradient Σ_i ½ (f(b) − f(b̃)) weight_i(u, b, b̃) ∂α_i."""
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating point tensor, got {logits.dtype}")
    if not 0 <= event_dims <= logits.dim():
        raise ValueError(f"event_dims must be in [0, {logits.dim()}], got {event_dims}")
    u = torch.rand(logits.shape, dtype=logits.dtype, device=logits.device)
    prob = torch.sigmoid(logits.detach())
    b = (u < prob).to(logits.dtype)
    b_tilde = (1.0 - u < prob).to(logits.dtype)
    cost, cost_tilde = f(b), f(b_tilde)
    half_difference = 0.5 * (cost - cost_tilde).detach()
    half_difference = half_difference.reshape(half_difference.shape + (1,) * event_dims)
    score = half_difference * weight(u, b, b_tilde) * logits
    if event_dims > 0:
        score = score.sum(tuple(range(-event_dims, 0)))
    return 0.5 * (cost + cost_tilde) + gradient_only(score)


def arm(f: Callable[[Tensor], Tensor], logits: Tensor, event_dims: int = 1) -> Tensor:
    """ARM surrogate for ∇_α E_{b ~ Bernoulli(σ(α))}[f(b)] (Yin & Zhou, 2019).

    ĝ_i = (f(1[u > σ(−α)]) − f(1[u < σ(α)])) (u_i − ½), u ~ U(0, 1)^d.

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
    # (f(b̃) − f(b)) (u − ½) = ½ (f(b) − f(b̃)) (1 − 2u).
    return _antithetic_surrogate(f, logits, event_dims, lambda u, b, b_tilde: 1.0 - 2.0 * u)


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

    def weight(u: Tensor, b: Tensor, b_tilde: Tensor) -> Tensor:
        sign = 1.0 - 2.0 * b_tilde
        return sign * (b != b_tilde).to(b.dtype) * torch.sigmoid(logits.detach().abs())

    return _antithetic_surrogate(f, logits, event_dims, weight)
