"""The one mechanism behind every implicit gradient in :mod:`stochgrad.implicit`.

For a sample ``z`` of a univariate law with CDF ``F(z; θ)`` and density ``p(z; θ)``,
implicit differentiation of ``F(z; θ) = u`` at fixed ``u`` gives

    dz/dθ = -(∂F(z; θ)/∂θ) / p(z; θ).

Both helpers below return a tensor equal to ``z`` in value whose gradient with respect to the
parameters is that derivative. They are written with plain differentiable torch ops (no custom
``autograd.Function``), so they compose with ``torch.func`` transforms and ``torch.compile``.
Second derivatives through the sample are not provided (``dz/dθ`` is treated as a constant).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from stochgrad.special._autograd import gradient_only

__all__ = ["attach_gradients", "implicit_from_cdf", "implicit_triangular", "needs_grad"]


def needs_grad(*params: Tensor) -> bool:
    """Whether any parameter will receive a gradient (so the derivative is worth computing)."""
    return torch.is_grad_enabled() and any(
        isinstance(p, Tensor) and p.requires_grad for p in params
    )


def attach_gradients(z: Tensor, params: Sequence[Tensor], dz_dparams: Sequence[Tensor]) -> Tensor:
    """Return ``z`` whose gradient w.r.t. ``params[i]`` is ``dz_dparams[i]`` (already computed).

    ``params`` must broadcast to ``z``; autograd sums the broadcast dimensions back.
    """
    out = z.detach()
    for param, dz in zip(params, dz_dparams, strict=True):
        if isinstance(param, Tensor) and param.requires_grad:
            out = out + gradient_only(param) * dz.detach()
    return out


def implicit_from_cdf(
    z: Tensor, cdf: Callable[[Tensor], Tensor], log_prob: Callable[[Tensor], Tensor]
) -> Tensor:
    """Implicit reparameterization of a univariate sample through a differentiable ``cdf``.

    ``cdf(z)`` must be differentiable in the distribution's parameters; ``z`` is detached
    first. Returns ``z - (F - stop_grad(F)) / stop_grad(p)``.
    """
    z = z.detach()
    cdf_value = cdf(z)
    density = log_prob(z).detach().exp()
    return z - gradient_only(cdf_value) / density


def implicit_triangular(
    z: Tensor, conditional: Callable[[int, list[Tensor]], tuple[Tensor, Tensor]]
) -> Tensor:
    """Implicit reparameterization of ``z`` (``..., D``) through its conditional CDFs.

    With ``u_d = F_d(z_d | z_<d; θ)`` the Jacobian ``∂u/∂z`` is lower triangular with the
    conditional densities on its diagonal, so ``dz/dθ = -(∂u/∂z)⁻¹ ∂u/∂θ`` is solved by forward
    substitution. ``conditional(d, previous)`` returns ``(cdf_d, density_d)`` at ``z[..., d]``,
    where ``previous`` holds the already reparameterized ``z[..., :d]`` (equal to ``z`` in value):
    evaluating ``cdf_d`` at them lets autograd carry ``Σ_{j<d} ∂u_d/∂z_j · dz_j/dθ``, one
    substitution step per coordinate and no per-sample Jacobian. Only the derivative of ``cdf_d``
    is used, so it may differ from the CDF by any term constant in ``θ`` and ``z``.
    """
    z = z.detach()
    previous: list[Tensor] = []
    for d in range(z.shape[-1]):
        cdf_value, density = conditional(d, previous)
        previous.append(z[..., d] - gradient_only(cdf_value) / density.detach())
    return torch.stack(previous, dim=-1)
