"""The one mechanism behind every implicit gradient in :mod:`stochgrad.implicit`.

For a sample ``z`` of a univariate law with CDF ``F(z; θ)`` and density ``p(z; θ)``,
implicit differentiation of ``F(z; θ) = u`` at fixed ``u`` gives

    dz/dθ = -(∂F(z; θ)/∂θ) / p(z; θ).

Both helpers below return a tensor equal to ``z`` in value whose gradient with respect to the
parameters is that derivative. Traced code (``torch.func`` transforms, ``torch.compile``) gets
plain differentiable torch ops; in eager mode :func:`attach_gradients` uses one autograd node,
which saves a pass over ``z`` per parameter. Mixtures solve their triangular system of
conditional CDFs in :mod:`stochgrad.implicit.mixture`.
Second derivatives through the sample are not provided (``dz/dθ`` is treated as a constant).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.distributions import constraints

from stochgrad.special._autograd import gradient_only
from stochgrad.special._quadrature import traced, working_dtype

__all__ = [
    "attach_gradients",
    "half_in_float32",
    "implicit_from_cdf",
    "needs_grad",
]


def needs_grad(*params: Tensor) -> bool:
    """Whether any parameter will receive a gradient (so the derivative is worth computing)."""
    return torch.is_grad_enabled() and any(
        isinstance(p, Tensor) and p.requires_grad for p in params
    )


def attach_gradients(z: Tensor, params: Sequence[Tensor], dz_dparams: Sequence[Tensor]) -> Tensor:
    """Return ``z`` whose gradient w.r.t. ``params[i]`` is ``dz_dparams[i]`` (already computed).

    ``params`` must broadcast to ``z``; autograd sums the broadcast dimensions back.
    In eager mode one autograd node does it (no forward passes over ``z``); traced code gets the
    same gradient from plain ops, ``z + (θ - stop_grad(θ)) dz``.
    """
    pairs = [
        (param, dz.detach())
        for param, dz in zip(params, dz_dparams, strict=True)
        if isinstance(param, Tensor) and param.requires_grad
    ]
    out = z.detach()
    if not pairs:
        return out
    if not traced(out, *(p for p, _ in pairs)):
        return _AttachGradients.apply(out, len(pairs), *(t for pair in pairs for t in pair))
    for param, dz in pairs:
        out = out + gradient_only(param) * dz
    return out


class _AttachGradients(torch.autograd.Function):
    """``z`` in value; backward sends ``grad · dz_i`` (summed to its shape) to ``param_i``."""

    @staticmethod
    def forward(ctx, z: Tensor, count: int, *pairs: Tensor) -> Tensor:
        params, grads = pairs[0::2], pairs[1::2]
        ctx.save_for_backward(*grads)
        ctx.shapes = [p.shape for p in params]
        ctx.dtypes = [p.dtype for p in params]
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad: Tensor):
        out: list[Tensor | None] = [None, None]
        for dz, shape, dtype in zip(ctx.saved_tensors, ctx.shapes, ctx.dtypes, strict=True):
            out += [(grad * dz).sum_to_size(shape).to(dtype), None]
        return tuple(out)


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


def half_in_float32(method: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run a distribution method in float32 when the parameters are float16/bfloat16.

    The decorated method is called on a float32 twin built from the parameters named in
    ``arg_constraints`` (casts keep the autograd graph), tensor arguments are cast to float32 and
    the result is cast back to the parameters' dtype. torch has no half-precision Gamma sampler
    on CPU and half ``lgamma``/quadrature lose most digits, so this is the documented behaviour.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        names = list(self.arg_constraints)
        dtype = getattr(self, names[0]).dtype
        if working_dtype(dtype) == dtype:
            return method(self, *args, **kwargs)
        twin = type(self)(
            **{name: getattr(self, name).float() for name in names},
            validate_args=self._validate_args,
        )
        args = [a.float() if isinstance(a, Tensor) else a for a in args]
        if args and isinstance(args[0], Tensor) and self.support is constraints.simplex:
            args[0] = _renormalized(args[0], dtype, self._validate_args)
        return method(twin, *args, **kwargs).to(dtype)

    return wrapper


def _renormalized(value: Tensor, dtype: torch.dtype, validate: bool) -> Tensor:
    """A simplex point given in ``dtype``: sums to 1 only within that dtype's rounding."""
    if validate:
        tolerance = value.shape[-1] * torch.finfo(dtype).eps
        inside = (value >= 0).all(-1) & ((value.sum(-1) - 1).abs() <= tolerance)
        if not torch._is_all_true(inside):
            raise ValueError(
                f"value must lie on the simplex (entries >= 0 summing to 1 within {tolerance:.1e}"
                f" in {dtype}), got {value}"
            )
    return value / value.sum(-1, keepdim=True)
