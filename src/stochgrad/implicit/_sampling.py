"""Log-space Gamma draws shared by Gamma-based families (Beta, Dirichlet, StudentT)."""

from __future__ import annotations

import torch
from torch import Tensor

from stochgrad.implicit._core import attach_gradients, needs_grad
from stochgrad.special.gamma import standard_gamma_log_grad

__all__ = ["log_standard_gamma"]


def log_standard_gamma(concentration: Tensor) -> Tensor:
    """``log x`` for ``x ~ Gamma(concentration, 1)``, with the implicit gradient attached.

    Draws ``log Gamma(a + 1) + log(U) / a`` (``Gamma(a) = Gamma(a+1) U^(1/a)``), which never
    underflows, then attaches ``d log x / da = -(∂P/∂a) / (x p(x))`` evaluated at the draw.
    """
    a = concentration.detach()
    with torch.no_grad():
        boosted = torch._standard_gamma(a + 1).clamp_min(torch.finfo(a.dtype).tiny)
        log_x = boosted.log() + torch.rand_like(a).clamp_min(torch.finfo(a.dtype).tiny).log() / a
    if not needs_grad(concentration):
        return log_x
    return attach_gradients(log_x, [concentration], [standard_gamma_log_grad(a, log_x)])
