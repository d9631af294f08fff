"""Numerics shared by the distributions: incomplete gamma/beta derivatives, log-space helpers,
and the Gamma sampler (:mod:`stochgrad.special.sampling`).

Written in torch ops, vectorized, for CPU and CUDA in float32 and float64; on CPU in eager mode
the Gamma and Beta quadratures run as fused compiled kernels of the same arithmetic
(``special/_native.py``, ``special/csrc/kernels.cpp``), with the torch ops as the fallback.
"""

from stochgrad.special.beta import beta_grad, betainc
from stochgrad.special.gamma import gammainc, standard_gamma_grad, standard_gamma_log_grad
from stochgrad.special.sampling import log_standard_gamma_sample, standard_gamma_sample

__all__ = [
    "beta_grad",
    "betainc",
    "gammainc",
    "log_standard_gamma_sample",
    "standard_gamma_grad",
    "standard_gamma_log_grad",
    "standard_gamma_sample",
]
