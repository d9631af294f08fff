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
    # Eager mode: all-small or none-small tensors (the usual case: broadcast parameters) skip the
    # masks; mixed ones use them, without index/nonzero (which cost 3x the arithmetic on CPU).
    any_small = traced(a) or bool(small.any())
    if not any_small:
        return torch._standard_gamma(a).clamp_min_(tiny).log_()
    all_small = not traced(a) and bool(small.all())
    boosted = torch._standard_gamma(a + 1 if all_small else torch.where(small, a + 1, a))
    boosted = boosted.clamp_min(tiny).log()
    shrink = torch.rand_like(a).clamp_min(tiny).log() / a
    if all_small:
        return boosted + shrink
    return torch.where(small, boosted + shrink, boosted)
