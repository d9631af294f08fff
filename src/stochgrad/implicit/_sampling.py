"""Log-space Gamma draws shared by Gamma-based families (Beta, Dirichlet, StudentT)."""

from __future__ import annotations

import torch
from torch import Tensor

from stochgrad.implicit._core import attach_gradients, needs_grad
from stochgrad.special.gamma import standard_gamma_log_grad
from stochgrad.special.sampling import log_standard_gamma_sample

__all__ = ["log_standard_gamma"]


def log_standard_gamma(concentration: Tensor) -> Tensor:
    """``log x`` for ``x ~ Gamma(concentration, 1)``, with the implicit gradient attached.

    Drawn by :func:`~stochgrad.special.sampling.log_standard_gamma_sample` (where ``a < 1``
    ``log Gamma(a + 1) + log(U) / a``, which never underflows). Then attaches
    ``d log x / da = -(∂P/∂a) / (x p(x))`` evaluated at the draw.
    """
    a = concentration.detach()
    with torch.no_grad():
        log_x = log_standard_gamma_sample(a)
    if not needs_grad(concentration):
        return log_x
    return attach_gradients(log_x, [concentration], [standard_gamma_log_grad(a, log_x)])
