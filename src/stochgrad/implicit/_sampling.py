"""Log-space Gamma draws shared by Gamma-based families (Beta, Dirichlet, StudentT)."""

from __future__ import annotations

import torch
from torch import Tensor

from stochgrad.implicit._core import attach_gradients, needs_grad
from stochgrad.special._quadrature import traced
from stochgrad.special.gamma import standard_gamma_log_grad

__all__ = ["log_standard_gamma"]


def log_standard_gamma(concentration: Tensor) -> Tensor:
    """``log x`` for ``x ~ Gamma(concentration, 1)``, with the implicit gradient attached.

    Where ``a < 1`` draws ``log Gamma(a + 1) + log(U) / a`` (``Gamma(a) = Gamma(a+1) U^(1/a)``),
    which never underflows; elsewhere ``log Gamma(a)`` directly. Then attaches
    ``d log x / da = -(∂P/∂a) / (x p(x))`` evaluated at the draw.
    """
    a = concentration.detach()
    with torch.no_grad():
        log_x = _log_standard_gamma(a)
    if not needs_grad(concentration):
        return log_x
    return attach_gradients(log_x, [concentration], [standard_gamma_log_grad(a, log_x)])


def _log_standard_gamma(a: Tensor) -> Tensor:
    tiny = torch.finfo(a.dtype).tiny
    small = a < 1
    if traced(a):
        boosted = torch._standard_gamma(torch.where(small, a + 1, a)).clamp_min(tiny).log()
        shrink = torch.rand_like(a).clamp_min(tiny).log() / a
        return torch.where(small, boosted + shrink, boosted)
    any_small = bool(small.any())
    log_x = torch._standard_gamma(torch.where(small, a + 1, a) if any_small else a)
    log_x = log_x.clamp_min_(tiny).log_()
    if any_small:  # U^(1/a) only where it is needed
        shrink = torch.rand_like(a[small]).clamp_min_(tiny).log_() / a[small]
        log_x = log_x.masked_scatter(small, log_x[small] + shrink)
    return log_x
