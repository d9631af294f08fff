"""Numerics shared by the distributions: incomplete gamma/beta derivatives, log-space helpers.

Written in torch ops only, vectorized, for CPU and CUDA in float32 and float64.
"""

from stochgrad.special.beta import beta_grad, betainc
from stochgrad.special.gamma import gammainc, standard_gamma_grad, standard_gamma_log_grad

__all__ = ["beta_grad", "betainc", "gammainc", "standard_gamma_grad", "standard_gamma_log_grad"]
