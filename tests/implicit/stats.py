"""Statistical helpers: per-sample pathwise gradients and SE-based assertions."""

from collections.abc import Callable

import torch

# Two-sided tolerance in standard errors for a single test (false-failure rate ~7e-6 per check).
Z_TOL = 4.5


def per_sample_gradients(
    make_dist: Callable[..., torch.distributions.Distribution],
    params: list[torch.Tensor],
    f: Callable[[torch.Tensor], torch.Tensor],
    n: int,
) -> list[torch.Tensor]:
    """``n`` independent estimates of ``∇θ f(z)``, one per draw, for every parameter.

    Each parameter is replicated ``n`` times along a new leading batch dimension, so the
    gradient of ``sum_i f(z_i)`` w.r.t. replica ``i`` is the single-sample estimate ``∇θ f(z_i)``.
    """
    replicas = [p.detach().expand(n, *p.shape).clone().requires_grad_(True) for p in params]
    z = make_dist(*replicas).rsample()
    f(z).sum().backward()
    return [r.grad for r in replicas]


def exact_gradients(expectation: Callable[..., torch.Tensor], params: list[torch.Tensor]):
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    grads = torch.autograd.grad(expectation(*leaves).sum(), leaves, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(leaves, grads, strict=True)]


def z_scores(estimates: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    mean = estimates.mean(0)
    se = estimates.std(0) / estimates.shape[0] ** 0.5
    return (mean - exact) / se
