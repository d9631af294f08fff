"""Elementary functions evaluated without overflow: ``log(1 + (x/s)²)`` for any finite ``x``."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["log1p_square"]


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
