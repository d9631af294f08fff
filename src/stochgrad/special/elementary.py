"""Elementary functions without overflow or cancellation: ``log(1 + (x/s)²)``, ``e^u - 1 - u``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["expm1_excess", "log1p_square"]


def log1p_square(x: Tensor, scale: Tensor | float = 1.0) -> Tensor:
    r"""``log(1 + (x/scale)²)`` for ``scale > 0``, finite for every finite ``x``.

    Math: ``log1p((x/s)²)`` for ``|x| ≤ s``, else ``2 (log|x| - log s) + log1p((s/x)²)`` (the
    log of ``1 + r² = r² (1 + 1/r²)``); neither ``(x/s)²`` nor ``x/s`` is formed where it could
    overflow (float32 ``x²`` overflows at ``|x| > 1.8e19``). Both branches are exact to rounding,
    and the branch not taken is fed a harmless value so that gradients stay finite.

    Example::

        >>> log1p_square(torch.tensor([0.0, 1e30, 3e38]), 0.5)
        tensor([  0.0000, 139.5414, 178.5800])
    """
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    small = x.abs() <= scale
    inner = torch.where(small, x, torch.zeros_like(x)) / scale
    outer = torch.where(small, scale, x).abs()
    large = 2 * (outer.log() - scale.log()) + torch.log1p((scale / outer) ** 2)
    return torch.where(small, torch.log1p(inner * inner), large)


# 1/k! for k = 2..13: the Taylor series of (e^u - 1 - u)/u² to u^11 (float64) or u^6 (float32)
# has a truncation below 2e-17 (5e-9) relative for |u| < ln(2)/2.
_INVERSE_FACTORIALS = tuple(1 / math.factorial(k) for k in range(2, 14))
_SERIES_DEGREE = {torch.float64: 13, torch.float32: 8}
_SERIES_RADIUS = 0.5 * math.log(2)


def expm1_excess(u: Tensor) -> Tensor:
    r"""``e^u - 1 - u``, accurate to a few ulps relative even where ``|u|`` is tiny.

    Math: ``u² Σ_{k>=2} u^(k-2)/k!`` (Horner) for ``|u| < ln(2)/2``, where ``expm1(u) - u``
    would cancel (relative error ``2ε/|u|``); ``expm1(u) - u`` elsewhere (at most ~2.5 bits lost).
    The fused kernels compute the same split from their ``expm1`` range reduction.

    Example::

        >>> expm1_excess(torch.tensor([1e-5, -1.0, 2.0], dtype=torch.float64))
        tensor([5.0000e-11, 3.6788e-01, 4.3891e+00], dtype=torch.float64)
    """
    degree = _SERIES_DEGREE.get(u.dtype, 8)
    series = torch.full_like(u, _INVERSE_FACTORIALS[degree - 2])
    for coefficient in reversed(_INVERSE_FACTORIALS[: degree - 2]):
        series = series * u + coefficient
    series = series * (u * u)
    return torch.where(u.abs() < _SERIES_RADIUS, series, torch.expm1(u) - u)
